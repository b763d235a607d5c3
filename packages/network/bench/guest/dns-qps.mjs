// DNS queries per second over UDP with CONCURRENCY outstanding queries for DURATION ms.
// Names are distinct (q<n>.<suffix>) so caches do not answer.
import dgram from "node:dgram";
const [server, port, concurrency, durationMs, suffix] = process.argv.slice(2);
const s = dgram.createSocket({ type: "udp4", recvBufferSize: 1 << 22 });
let next = 0;
let answered = 0;
let resent = 0;
const latencies = [];
const inflight = new Map();
function send() {
  const id = next++ & 0xffff;
  const name = `q${next}.${suffix}`;
  const parts = [Buffer.from([id >> 8, id & 255, 1, 0, 0, 1, 0, 0, 0, 0, 0, 0])];
  for (const l of name.split(".")) parts.push(Buffer.from([l.length]), Buffer.from(l));
  parts.push(Buffer.from([0, 0, 1, 0, 1]));
  inflight.set(id, performance.now());
  s.send(Buffer.concat(parts), Number(port), server);
}
s.on("message", (m) => {
  const id = m.readUInt16BE(0);
  const at = inflight.get(id);
  if (at === undefined) return;
  inflight.delete(id);
  answered++;
  if ((answered & 15) === 0) latencies.push(performance.now() - at);
  if (performance.now() < end) send();
});
const t0 = performance.now();
const end = t0 + Number(durationMs);
// Re-send lost queries so a drop does not stall a worker slot.
const sweep = setInterval(() => {
  const now = performance.now();
  for (const [id, at] of inflight) if (now - at > 500) {
    inflight.delete(id);
    resent++;
    if (now < end) send();
  }
}, 100);
s.bind(0, () => {
  for (let i = 0; i < Number(concurrency); i++) send();
});
setTimeout(() => {
  clearInterval(sweep);
  latencies.sort((a, b) => a - b);
  const pct = (q) => Math.round((latencies[Math.floor(q * (latencies.length - 1))] ?? 0) * 1000);
  const cpu = process.cpuUsage();
  const clientCpuSeconds = (cpu.user + cpu.system) / 1e6;
  console.log(JSON.stringify({ qps: answered / ((performance.now() - t0) / 1000), answered, resent, latencyMedianUs: pct(0.5), latencyP99Us: pct(0.99), clientCpuSeconds }));
  s.close();
}, Number(durationMs) + 300);
