import { createHash } from "node:crypto";
import { writeFileSync } from "node:fs";
import http from "node:http";
import type { AddressInfo } from "node:net";

/** A 1 MiB block of deterministic pseudo-random bytes (SHA-256 counter mode). */
export function makeBlock(seed: string, bytes = 1024 * 1024): Buffer {
  const out = Buffer.allocUnsafe(bytes);
  for (let i = 0, off = 0; off < bytes; i++, off += 32) {
    createHash("sha256").update(`${seed}:${i}`).digest().copy(out, off);
  }
  return out;
}

export function sha256OfRepeated(block: Buffer, times: number): string {
  const h = createHash("sha256");
  for (let i = 0; i < times; i++) h.update(block);
  return h.digest("hex");
}

export function writeBlockFile(path: string, block: Buffer): void {
  writeFileSync(path, block);
}

/**
 * Host loopback HTTP server: GET /blocks/N streams the block N times; PUT/POST /upload replies
 * with the sha256 and length of the body; GET /small answers "ok".
 */
export async function startBlockServer(
  block: Buffer,
): Promise<{ server: http.Server; port: number; stats: { drainWaits: number; lastPumpMs: number }; close(): Promise<void> }> {
  /** lastPumpMs: how long the last GET took to hand all its blocks to the socket. */
  const stats = { drainWaits: 0, lastPumpMs: 0 };
  const server = http.createServer((req, res) => {
    req.on("error", () => {});
    res.on("error", () => {});
    const url = req.url ?? "/";
    const m = /^\/blocks\/(\d+)$/.exec(url);
    if (req.method === "GET" && m) {
      let left = Number(m[1]);
      const t0 = performance.now();
      res.writeHead(200, { "content-length": String(left * block.length), "content-type": "application/octet-stream" });
      const pump = () => {
        while (left > 0) {
          left--;
          if (!res.write(block)) {
            stats.drainWaits++;
            res.once("drain", pump);
            return;
          }
        }
        stats.lastPumpMs = performance.now() - t0;
        res.end();
      };
      pump();
      return;
    }
    if (url === "/upload") {
      const h = createHash("sha256");
      let n = 0;
      req.on("data", (d: Buffer) => {
        h.update(d);
        n += d.length;
      });
      req.on("end", () => res.end(`${h.digest("hex")} ${n}\n`));
      return;
    }
    res.end("ok\n");
  });
  server.keepAliveTimeout = 1000;
  server.on("clientError", (_err, sock) => sock.destroy());
  await new Promise<void>((r) => server.listen(0, "127.0.0.1", () => r()));
  const port = (server.address() as AddressInfo).port;
  return {
    server,
    port,
    stats,
    close: () =>
      new Promise<void>((r) => {
        server.closeAllConnections();
        server.close(() => r());
      }),
  };
}
