// Guest side of the concurrency test: N parallel connections; each asks for its payload
// ("<i>\n", then half-close), reads BYTES until the server's FIN and checks them byte for byte.
import net from "node:net";
import { createHash } from "node:crypto";
import { baseBlock, payloadFor } from "./pattern.mjs";
const [host, port, n, bytes] = process.argv.slice(2);
const count = Number(n);
const base = baseBlock(Number(bytes));
let ok = 0;
let bad = 0;
let finished = 0;
const errors = {};
for (let i = 0; i < count; i++) {
  const want = createHash("sha256").update(payloadFor(base, i)).digest("hex");
  const h = createHash("sha256");
  let got = 0;
  const s = net.connect({ host, port: Number(port), allowHalfOpen: true });
  s.on("connect", () => s.end(`${i}\n`));
  s.on("data", (d) => {
    h.update(d);
    got += d.length;
  });
  s.on("end", () => {
    if (got === base.length && h.digest("hex") === want) ok++;
    else bad++;
  });
  s.on("error", (e) => {
    errors[e.code] = (errors[e.code] ?? 0) + 1;
  });
  s.on("close", () => {
    if (++finished === count) console.log(JSON.stringify({ ok, bad, errors }));
  });
}
