// TCP round trip: 1-byte ping-pong over one TCP_NODELAY connection; median in microseconds.
import net from "node:net";
const [host, port, count] = process.argv.slice(2);
const n = Number(count);
const s = net.connect({ host, port: Number(port), noDelay: true });
const samples = [];
let t = 0;
s.on("connect", () => {
  t = performance.now();
  s.write("x");
});
s.on("data", () => {
  samples.push(performance.now() - t);
  if (samples.length === n) {
    samples.sort((a, b) => a - b);
    console.log(JSON.stringify({ medianUs: samples[n >> 1] * 1000, p99Us: samples[Math.floor(n * 0.99)] * 1000 }));
    s.destroy();
    return;
  }
  t = performance.now();
  s.write("x");
});
