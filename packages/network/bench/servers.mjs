// Host-side servers for the benchmarks, in their own process: a tiny HTTP server and a TCP
// echo server on 127.0.0.1. Prints {"http":port,"echo":port}.
import http from "node:http";
import net from "node:net";
const h = http.createServer((req, res) => res.end("ok\n"));
h.keepAliveTimeout = 1;
const e = net.createServer({ noDelay: true }, (s) => {
  s.on("error", () => {});
  s.pipe(s);
});
await new Promise((r) => h.listen({ port: 0, host: "127.0.0.1", backlog: 4096 }, r));
await new Promise((r) => e.listen(0, "127.0.0.1", r));
console.log(JSON.stringify({ http: h.address().port, echo: e.address().port }));
