// Guest-side probe: connect to each HOST:PORT in turn; print one JSON array of outcomes with timing.
import net from "node:net";
const [timeoutMs, ...targets] = process.argv.slice(2);
const results = [];
for (const t of targets) {
  const i = t.lastIndexOf(":");
  const host = t.slice(0, i);
  const port = Number(t.slice(i + 1));
  results.push(
    await new Promise((resolve) => {
      const t0 = performance.now();
      const s = net.connect({ host, port });
      const done = (r) => {
        s.destroy();
        resolve({ target: t, ...r, ms: Math.round(performance.now() - t0) });
      };
      s.setTimeout(Number(timeoutMs), () => done({ outcome: "timeout" }));
      s.on("connect", () => done({ outcome: "connected" }));
      s.on("error", (e) => done({ outcome: "error", code: e.code }));
    }),
  );
}
console.log(JSON.stringify(results));
