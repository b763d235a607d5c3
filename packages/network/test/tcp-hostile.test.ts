// A guest's TCP segments against the stack's per-flow and shared bounds, played by injecting frames (no guest kernel
// that would behave). Host peers are loopback servers reached through the gateway (policy hostPorts).
import net from "node:net";
import { afterEach, describe, expect, test } from "vitest";
import { TCP_ACK, TCP_RST } from "../src/wire/tcp.js";
import { hostileStack, sleep } from "./hostile-stack.js";

const MiB = 1024 * 1024;
const cleanups: Array<() => Promise<void>> = [];
afterEach(async () => {
  for (const c of cleanups.splice(0)) await c();
});

/** A loopback server; `onSocket` decides what each accepted connection does. */
async function loopbackServer(onSocket: (s: net.Socket) => void): Promise<number> {
  const sockets: net.Socket[] = [];
  const server = net.createServer((s) => {
    sockets.push(s);
    s.on("error", () => {});
    onSocket(s);
  });
  await new Promise<void>((r) => server.listen(0, "127.0.0.1", () => r()));
  cleanups.push(async () => {
    for (const s of sockets) s.destroy();
    await new Promise<void>((r) => server.close(() => r()));
  });
  return (server.address() as net.AddressInfo).port;
}

describe("out-of-order segments from a hostile guest", () => {
  test("hostile: 1-byte segments with gaps on 64 flows are bounded by the receive budget, not 4096 per flow", async () => {
    const port = await loopbackServer((s) => s.resume());
    // 1 MiB shared by 64 flows: 16 KiB each, i.e. 63 queued 1-byte segments at 257 bytes charged each.
    const env = await hostileStack({ policy: { hostPorts: [port] }, limits: { tcpReceiveBudgetBytes: MiB } });
    cleanups.push(() => env.close());
    const flows = 64;
    const isns: number[] = [];
    for (let f = 0; f < flows; f++) isns.push((await env.open(20000 + f, port, 65535))!);
    expect(isns.every((i) => i !== undefined)).toBe(true);
    const one = Buffer.from([0x41]);
    for (let i = 0; i < 4200; i++) {
      for (let f = 0; f < flows; f++) {
        env.stack.injectFrame(env.g.tcp({ dst: env.gw, sport: 20000 + f, dport: port, seq: 1003 + 2 * i, ack: isns[f]! + 1, flags: TCP_ACK, payload: one }));
      }
      if (i % 200 === 0) await sleep(0);
    }
    const drops = env.stack.counters.drops;
    console.log(`64 flows x 4200 one-byte segments with gaps: ${drops["tcp-out-of-order-queued"]} queued, ${drops["tcp-out-of-order-dropped"]} dropped`);
    // Before the per-segment charge: 4096 per flow (262,144) whatever the budget.
    expect(drops["tcp-out-of-order-queued"]).toBeLessThanOrEqual(flows * 64);
  });

  test("hostile: with 4096 segments queued, each further out-of-order frame costs little (SACK blocks from merged ranges)", async () => {
    const env = await hostileStack();
    cleanups.push(() => env.close());
    // DNS over TCP: intercepted before the egress policy, so any guest can open it.
    const isn = (await env.open(41000, 53, 65535, { mss: 1460, windowScale: 7, sackPermitted: true }))!;
    expect(isn).toBeDefined();
    const one = Buffer.from([0x41]);
    const send = (i: number) =>
      env.stack.injectFrame(env.g.tcp({ dst: env.gw, sport: 41000, dport: 53, seq: 1003 + 2 * i, ack: isn + 1, flags: TCP_ACK, payload: one }));
    for (let i = 0; i < 4096; i++) send(i);
    const queued = env.stack.counters.drops["tcp-out-of-order-queued"]!;
    expect(queued).toBeGreaterThan(4000);
    const t0 = performance.now();
    for (let i = 4096; i < 8096; i++) send(i);
    const usPerFrame = ((performance.now() - t0) * 1000) / 4000;
    console.log(`${queued} one-byte segments queued; 4000 more frames: ${usPerFrame.toFixed(1)} us each`);
    // Sorting every range per ACK cost ~450 us per frame here; reading the merged ranges, a few us.
    expect(usPerFrame).toBeLessThan(100);
  });
});

describe("host data toward a guest that never opens its window", () => {
  test("hostile: the send buffers of 128 zero-window flows stay near the shared budget; others resume once it frees", async () => {
    // Each accepted connection streams as fast as the stack reads (one shared 1 MiB chunk: no memory of its own).
    const chunk = Buffer.alloc(MiB, 0x61);
    const port = await loopbackServer((s) => {
      const pump = () => {
        while (s.write(chunk));
      };
      s.on("drain", pump);
      pump();
    });
    const budget = 8 * MiB;
    const env = await hostileStack({ policy: { hostPorts: [port] }, limits: { tcpSendBudgetBytes: budget } });
    cleanups.push(() => env.close());
    global.gc?.();
    const before = process.memoryUsage().arrayBuffers;
    const flows = 128;
    const isns: number[] = [];
    for (let f = 0; f < flows; f++) isns.push((await env.open(20000 + f, port, 0))!);
    expect(isns.every((i) => i !== undefined)).toBe(true);
    await sleep(1500);
    global.gc?.();
    const held = process.memoryUsage().arrayBuffers - before;
    console.log(`${flows} zero-window flows, send budget 8 MiB: arrayBuffers +${(held / MiB).toFixed(1)} MiB`);
    // Per-flow floor alone: 128 × 512 KiB (+ 4 MiB each for the first flows) = 90+ MiB.
    // Budget + at most one 64 KiB read per flow.
    expect(held).toBeLessThan(budget + flows * 64 * 1024);

    // A flow opened now waits for room; the guest resets the stuck flows, which frees the budget, and it gets data.
    const late = 30000;
    const lateIsn = (await env.open(late, port, 65535))!;
    expect(lateIsn).toBeDefined();
    await sleep(200);
    const beforeFree = env.dataTo.get(late) ?? 0;
    for (let f = 0; f < flows; f++) {
      env.stack.injectFrame(env.g.tcp({ dst: env.gw, sport: 20000 + f, dport: port, seq: 1001, flags: TCP_RST }));
    }
    for (let i = 0; i < 200 && (env.dataTo.get(late) ?? 0) === 0; i++) await sleep(10);
    console.log(`late flow: ${beforeFree} bytes while the budget was spent, ${env.dataTo.get(late) ?? 0} after the resets`);
    expect(env.dataTo.get(late) ?? 0).toBeGreaterThan(0);
  });
});
