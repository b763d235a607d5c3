// Guest side of the half-close test: the server sends a greeting and FIN at once; we keep
// sending BYTES after receiving that FIN, then end our side. Prints what we saw as JSON.
import net from "node:net";
const [host, port, bytes] = process.argv.slice(2);
const total = Number(bytes);
const s = net.connect({ host, port: Number(port), allowHalfOpen: true });
let greeting = "";
let sawEnd = false;
s.on("data", (d) => {
  greeting += d.toString();
});
s.on("end", () => {
  sawEnd = true;
  const chunk = Buffer.alloc(64 * 1024, 0x61);
  let left = total;
  const pump = () => {
    while (left > 0) {
      const n = Math.min(left, chunk.length);
      left -= n;
      if (!s.write(n === chunk.length ? chunk : chunk.subarray(0, n))) return void s.once("drain", pump);
    }
    s.end();
  };
  pump();
});
s.on("close", (hadError) => {
  console.log(JSON.stringify({ greeting, sawEnd, hadError }));
});
s.on("error", (e) => console.log(JSON.stringify({ error: e.code })));
