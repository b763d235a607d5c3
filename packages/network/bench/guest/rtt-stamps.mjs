// Round-trip client that prints each request's send and answer times (process.hrtime, CLOCK_MONOTONIC,
// comparable across processes): node rtt-stamps.mjs HOST PORT COUNT. Output: {"send":[ns…],"recv":[ns…]}.
import net from "node:net";
const [host, port, count] = process.argv.slice(2);
const n = Number(count);
const send = new Array(n);
const recv = new Array(n);
let i = 0;
const s = net.connect({ host, port: Number(port), noDelay: true });
s.on("connect", () => {
  send[0] = process.hrtime.bigint();
  s.write("x");
});
s.on("data", () => {
  recv[i++] = process.hrtime.bigint();
  if (i === n) {
    console.log(JSON.stringify({ send: send.map(String), recv: recv.map(String) }));
    s.destroy();
    return;
  }
  send[i] = process.hrtime.bigint();
  s.write("x");
});
