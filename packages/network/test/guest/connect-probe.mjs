// Guest-side probe: connect to HOST:PORT and report how it ended, with timing, as JSON.
import net from "node:net";
const [host, port, timeoutMs = "15000"] = process.argv.slice(2);
const t0 = performance.now();
const s = net.connect({ host, port: Number(port) });
const done = (result) => {
  console.log(JSON.stringify({ ...result, ms: Math.round(performance.now() - t0) }));
  s.destroy();
  process.exit(0);
};
s.setTimeout(Number(timeoutMs), () => done({ outcome: "timeout" }));
s.on("connect", () => done({ outcome: "connected" }));
s.on("error", (e) => done({ outcome: "error", code: e.code }));
