import { createHash } from "node:crypto";
import net from "node:net";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { afterAll, beforeAll, describe, expect, onTestFinished, test } from "vitest";
import { ipToString } from "../src/index.js";
import { makeBlock, sha256OfRepeated, startBlockServer, writeBlockFile } from "./fixtures.js";
import { harnessUnavailable, startGuest } from "./harness.js";
import { LocalTargets } from "./local-targets.js";

const skip = harnessUnavailable();
if (skip) console.warn(`SKIP tcp harness tests: ${skip}`);
const guestScript = (name: string) => fileURLToPath(new URL(`./guest/${name}`, import.meta.url));
const GiB_BLOCKS = 1024;
// An address routed into a port-less bridge on this machine (test/local-targets.ts): nobody
// answers ARP, the host's connect() hangs in neighbour resolution (~3 s), so the stack's connect
// timeout (1.5 s here) must fire first. No packet leaves the machine. The policy opens its /24.
const UNROUTABLE = "198.18.99.77";

describe.skipIf(skip)("TCP through the stack, real Linux guest (MTU 65520)", () => {
  const block = makeBlock("tcp-test");
  const want1G = sha256OfRepeated(block, GiB_BLOCKS);
  let srv: Awaited<ReturnType<typeof startBlockServer>>;
  let env: Awaited<ReturnType<typeof startGuest>>;
  let gw: string;

  beforeAll(async () => {
    srv = await startBlockServer(block);
    env = await startGuest({ mtu: 65520, policy: { hostPorts: [srv.port] } });
    gw = ipToString(env.stack.addresses.gatewayIp);
  });
  afterAll(async () => {
    await env?.close();
    await srv?.close();
  });

  test("HTTP GET of 1 GiB from a host loopback server matches sha256", async () => {
    const t0 = performance.now();
    const r = await env.guest.sh(`curl -sS --fail http://${gw}:${srv.port}/blocks/${GiB_BLOCKS} | sha256sum`, { timeoutMs: 120_000 });
    const secs = (performance.now() - t0) / 1000;
    console.log(`GET 1 GiB (MTU 65520): ${secs.toFixed(1)} s, ${((1024 / secs) | 0)} MiB/s`);
    expect(r.stderr).toBe("");
    expect(r.stdout.split(" ")[0]).toBe(want1G);
  }, 150_000);

  test("HTTP upload of 1 GiB to a host loopback server matches sha256", async () => {
    const f = join(env.guest.dir, "block.bin");
    writeBlockFile(f, block);
    const t0 = performance.now();
    const r = await env.guest.sh(`for i in $(seq ${GiB_BLOCKS}); do cat ${f}; done | curl -sS --fail -T - http://${gw}:${srv.port}/upload`, {
      timeoutMs: 120_000,
    });
    const secs = (performance.now() - t0) / 1000;
    console.log(`PUT 1 GiB (MTU 65520): ${secs.toFixed(1)} s, ${((1024 / secs) | 0)} MiB/s`);
    expect(r.stdout.trim()).toBe(`${want1G} ${GiB_BLOCKS * block.length}`);
  }, 150_000);
});

describe.skipIf(skip)("TCP through the stack, real Linux guest (MTU 1500)", () => {
  const block = makeBlock("tcp-1500");
  let srv: Awaited<ReturnType<typeof startBlockServer>>;
  let env: Awaited<ReturnType<typeof startGuest>>;
  let gw: string;
  let refusedPort: number;
  const halfCloseLog: Array<{ received: number; sha: string }> = [];
  let halfCloseServer: net.Server;

  beforeAll(async () => {
    srv = await startBlockServer(block);
    // A port that is allowed by policy but has no listener: the host refuses it.
    const probe = net.createServer();
    await new Promise<void>((r) => probe.listen(0, "127.0.0.1", () => r()));
    refusedPort = (probe.address() as net.AddressInfo).port;
    await new Promise<void>((r) => probe.close(() => r()));
    // Half-close server: greets and sends FIN immediately, then counts what still arrives.
    halfCloseServer = net.createServer({ allowHalfOpen: true }, (sock) => {
      sock.on("error", () => {});
      const h = createHash("sha256");
      let n = 0;
      sock.on("data", (d: Buffer) => {
        h.update(d);
        n += d.length;
      });
      sock.on("end", () => halfCloseLog.push({ received: n, sha: h.digest("hex") }));
      sock.end("bye-from-server\n");
    });
    await new Promise<void>((r) => halfCloseServer.listen(0, "127.0.0.1", () => r()));
    const hcPort = (halfCloseServer.address() as net.AddressInfo).port;
    env = await startGuest({
      mtu: 1500,
      policy: { hostPorts: [srv.port, refusedPort, hcPort], rules: [{ action: "allow", cidr: "198.18.99.0/24" }] },
      limits: { connectTimeoutMs: 1500 },
    });
    gw = ipToString(env.stack.addresses.gatewayIp);
  });
  afterAll(async () => {
    await env?.close();
    await srv?.close();
    await new Promise<void>((r) => (halfCloseServer ? halfCloseServer.close(() => r()) : r()));
  });

  test("256 MiB each way at MTU 1500 with matching sha256", async () => {
    const want = sha256OfRepeated(block, 256);
    let t0 = performance.now();
    const get = await env.guest.sh(`curl -sS --fail http://${gw}:${srv.port}/blocks/256 | sha256sum`, { timeoutMs: 90_000 });
    console.log(`GET 256 MiB (MTU 1500): ${(256 / ((performance.now() - t0) / 1000)) | 0} MiB/s`);
    expect(get.stdout.split(" ")[0]).toBe(want);
    const f = join(env.guest.dir, "block1500.bin");
    writeBlockFile(f, block);
    t0 = performance.now();
    const put = await env.guest.sh(`for i in $(seq 256); do cat ${f}; done | curl -sS --fail -T - http://${gw}:${srv.port}/upload`, {
      timeoutMs: 90_000,
    });
    console.log(`PUT 256 MiB (MTU 1500): ${(256 / ((performance.now() - t0) / 1000)) | 0} MiB/s`);
    expect(put.stdout.trim()).toBe(`${want} ${256 * block.length}`);
  }, 200_000);

  test("nc -N request/EOF/response works (guest shutdown(SHUT_WR) reaches the server)", async () => {
    const r = await env.guest.sh(`printf 'request-body' | nc -N ${gw} ${srv.port === 0 ? 0 : (halfCloseServer.address() as net.AddressInfo).port}`, {
      timeoutMs: 10_000,
    });
    expect(r.stdout).toBe("bye-from-server\n");
    await waitFor(() => halfCloseLog.length >= 1);
    expect(halfCloseLog[0]!.received).toBe("request-body".length);
  });

  test("guest SHUT_WR after 4 MiB, then the server streams 8 MiB back to the half-closed guest", async () => {
    const server = net.createServer({ allowHalfOpen: true }, (sock) => {
      sock.on("error", () => {});
      let got = 0;
      sock.on("data", (d: Buffer) => {
        got += d.length;
      });
      sock.on("end", () => {
        sock.write(`${got}\n`);
        sock.end(Buffer.alloc(8 * 1024 * 1024, 0x62));
      });
    });
    await new Promise<void>((r) => server.listen(0, "127.0.0.1", () => r()));
    const port = (server.address() as net.AddressInfo).port;
    const env2 = await startGuest({ policy: { hostPorts: [port] } });
    try {
      const script =
        "const net=require('net');const [h,p]=process.argv.slice(1);const s=net.connect({host:h,port:+p,allowHalfOpen:true});" +
        "let n=0,head='';s.on('data',d=>{if(!head.includes('\\n'))head+=d.toString('latin1');n+=d.length});" +
        "s.on('end',()=>{console.log(JSON.stringify({n,head:head.split('\\n')[0]}))});s.on('connect',()=>s.end(Buffer.alloc(4*1024*1024,97)));";
      const r = await env2.guest.exec([process.execPath, "-e", script, ipToString(env2.stack.addresses.gatewayIp), String(port)], { timeoutMs: 30_000 });
      const out = JSON.parse(r.stdout.trim()) as { n: number; head: string };
      expect(out.head).toBe(String(4 * 1024 * 1024));
      expect(out.n).toBe(`${4 * 1024 * 1024}\n`.length + 8 * 1024 * 1024);
    } finally {
      await env2.close();
      server.close();
    }
  });

  test("a slow guest reader pauses the host socket: memory stays bounded and bytes stay intact", async () => {
    const want = sha256OfRepeated(block, 48);
    const rssBefore = process.memoryUsage().rss;
    const t0 = performance.now();
    const r = await env.guest.sh(`curl -sS --fail --limit-rate 8M http://${gw}:${srv.port}/blocks/48 | sha256sum`, { timeoutMs: 30_000 });
    const totalMs = performance.now() - t0;
    expect(r.stdout.split(" ")[0]).toBe(want);
    // Without backpressure the server would hand all 48 MiB to the stack within ~100 ms; with it,
    // the server can only finish once the guest has consumed all but the buffered tail (socket
    // buffers on both sides plus our bounded send buffer).
    console.log(`slow reader: server needed ${srv.stats.lastPumpMs.toFixed(0)} of ${totalMs.toFixed(0)} ms to write 48 MiB`);
    expect(srv.stats.lastPumpMs).toBeGreaterThan(totalMs * 0.25);
    expect(process.memoryUsage().rss - rssBefore).toBeLessThan(64 * 1024 * 1024);
  });

  test("the server's FIN does not cut data still flowing to it (8 MiB after FIN)", async () => {
    const port = (halfCloseServer.address() as net.AddressInfo).port;
    const bytes = 8 * 1024 * 1024;
    const r = await env.guest.exec([process.execPath, guestScript("half-close.mjs"), gw, String(port), String(bytes)], { timeoutMs: 30_000 });
    const out = JSON.parse(r.stdout.trim()) as { greeting: string; sawEnd: boolean; hadError: boolean };
    expect(out).toEqual({ greeting: "bye-from-server\n", sawEnd: true, hadError: false });
    await waitFor(() => halfCloseLog.length >= 2);
    const want = createHash("sha256").update(Buffer.alloc(bytes, 0x61)).digest("hex");
    expect(halfCloseLog[1]).toEqual({ received: bytes, sha: want });
  });

  test("RST both ways: a host reset reaches the guest, a guest reset reaches the host", async () => {
    // Reset an established connection (a little after accept, so the handshake has completed).
    const resetServer = net.createServer((sock) => {
      sock.on("error", () => {});
      setTimeout(() => sock.resetAndDestroy(), 100);
    });
    const seenByHost: string[] = [];
    const abortedByGuest = net.createServer((sock) => {
      sock.on("error", (e: NodeJS.ErrnoException) => seenByHost.push(e.code ?? "error"));
      sock.on("close", () => seenByHost.push("close"));
    });
    await new Promise<void>((r) => resetServer.listen(0, "127.0.0.1", () => r()));
    await new Promise<void>((r) => abortedByGuest.listen(0, "127.0.0.1", () => r()));
    const p1 = (resetServer.address() as net.AddressInfo).port;
    const p2 = (abortedByGuest.address() as net.AddressInfo).port;
    const env2 = await startGuest({ policy: { hostPorts: [p1, p2] } });
    try {
      const g2 = ipToString(env2.stack.addresses.gatewayIp);
      const script =
        "const net=require('net');const [h,p]=process.argv.slice(1);const s=net.connect(+p,h);" +
        "s.on('error',e=>{console.log(e.code);process.exit(0)});s.on('close',()=>{console.log('closed');process.exit(0)});";
      const r1 = await env2.guest.exec([process.execPath, "-e", script, g2, String(p1)]);
      expect(r1.stdout.trim()).toBe("ECONNRESET");
      const abortScript = "const net=require('net');const [h,p]=process.argv.slice(1);const s=net.connect(+p,h,()=>setTimeout(()=>{s.resetAndDestroy();setTimeout(()=>process.exit(0),100)},100));";
      await env2.guest.exec([process.execPath, "-e", abortScript, g2, String(p2)]);
      await waitFor(() => seenByHost.includes("close"));
      expect(seenByHost[0]).toBe("ECONNRESET");
    } finally {
      await env2.close();
      resetServer.close();
      abortedByGuest.close();
    }
  });

  test("a refused port gives ECONNREFUSED immediately", async () => {
    const r = await env.guest.exec([process.execPath, guestScript("connect-probe.mjs"), gw, String(refusedPort)]);
    const out = JSON.parse(r.stdout.trim()) as { outcome: string; code?: string; ms: number };
    expect(out.outcome).toBe("error");
    expect(out.code).toBe("ECONNREFUSED");
    expect(out.ms).toBeLessThan(500);
    const curl = await env.guest.sh(`curl -sS -m 5 http://${gw}:${refusedPort}/; echo "exit=$?"`);
    expect(curl.stdout).toContain("exit=7");
  });

  test("an unroutable address fails within the connect timeout (ICMP unreachable)", async () => {
    const targets = LocalTargets.create({ deadRoutes: [UNROUTABLE] });
    onTestFinished(() => targets.close());
    const r = await env.guest.exec([process.execPath, guestScript("connect-probe.mjs"), UNROUTABLE, "81", "20000"]);
    const out = JSON.parse(r.stdout.trim()) as { outcome: string; code?: string; ms: number };
    expect(out.outcome).toBe("error");
    expect(["EHOSTUNREACH", "ENETUNREACH"]).toContain(out.code);
    expect(out.ms).toBeLessThan(1500 + 1000);
  });

  test("counters saw the traffic and no frame was malformed", () => {
    const c = env.stack.counters;
    expect(c.framesIn).toBeGreaterThan(100_000);
    expect(c.drops["internal-error"]).toBeUndefined();
    expect(c.drops["tcp-checksum"]).toBeUndefined();
  });
});

async function waitFor(cond: () => boolean, timeoutMs = 10_000): Promise<void> {
  const end = Date.now() + timeoutMs;
  while (!cond()) {
    if (Date.now() > end) throw new Error("condition not met in time");
    await new Promise((r) => setTimeout(r, 20));
  }
}
