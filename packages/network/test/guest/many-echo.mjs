// Guest side of the concurrency test: N parallel connections, each sends BYTES of a
// per-connection pattern, half-closes, and checks that the echo is byte-identical.
import net from "node:net";
import { createHash } from "node:crypto";
const [host, port, n, bytes] = process.argv.slice(2);
const count = Number(n);
const size = Number(bytes);
let ok = 0;
let bad = 0;
let finished = 0;
const errors = {};
for (let i = 0; i < count; i++) {
  const payload = Buffer.alloc(size);
  for (let j = 0; j < size; j += 32) createHash("sha256").update(`${i}:${j}`).digest().copy(payload, j);
  const want = createHash("sha256").update(payload).digest("hex");
  const h = createHash("sha256");
  let got = 0;
  const s = net.connect({ host, port: Number(port), allowHalfOpen: true });
  s.on("connect", () => s.end(payload));
  s.on("data", (d) => {
    h.update(d);
    got += d.length;
  });
  s.on("end", () => {
    if (got === size && h.digest("hex") === want) ok++;
    else bad++;
  });
  s.on("error", (e) => {
    errors[e.code] = (errors[e.code] ?? 0) + 1;
  });
  s.on("close", () => {
    if (++finished === count) console.log(JSON.stringify({ ok, bad, errors }));
  });
}
