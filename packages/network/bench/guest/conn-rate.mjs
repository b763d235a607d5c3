// Short HTTP requests (new TCP connection each) for DURATION ms with CONCURRENCY workers.
import http from "node:http";
const [url, concurrency, durationMs] = process.argv.slice(2);
const end = performance.now() + Number(durationMs);
let done = 0;
let failed = 0;
const agent = new http.Agent({ keepAlive: false, maxSockets: Infinity });
async function worker() {
  while (performance.now() < end) {
    await new Promise((resolve) => {
      http
        .get(url, { agent }, (res) => {
          res.resume();
          res.on("end", () => {
            done++;
            resolve();
          });
        })
        .on("error", () => {
          failed++;
          resolve();
        });
    });
  }
}
const t0 = performance.now();
await Promise.all(Array.from({ length: Number(concurrency) }, worker));
console.log(JSON.stringify({ rps: done / ((performance.now() - t0) / 1000), done, failed }));
