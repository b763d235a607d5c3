// Guest side of the UDP relay test: sends one datagram of BYTES to HOST:PORT and prints the
// length and sha256 of the reply (the host echoes it; > MTU replies arrive as IPv4 fragments).
import dgram from "node:dgram";
import { createHash } from "node:crypto";
const [host, port, bytes] = process.argv.slice(2);
const s = dgram.createSocket("udp4");
const payload = Buffer.alloc(Number(bytes));
for (let i = 0; i < payload.length; i++) payload[i] = (i * 31) & 0xff;
const t = setTimeout(() => {
  console.log(JSON.stringify({ timeout: true }));
  s.close();
}, 3000);
s.on("message", (m) => {
  clearTimeout(t);
  console.log(JSON.stringify({ length: m.length, same: createHash("sha256").update(m).digest("hex") === createHash("sha256").update(payload).digest("hex") }));
  s.close();
});
s.send(payload, Number(port), host);
