// A guest's TCP segments against the stack's per-flow and shared bounds, played by injecting frames (no guest kernel
// that would behave). Host peers are loopback servers reached through the gateway (policy hostPorts).
import net from "node:net";
import { afterEach, describe, expect, test } from "vitest";
import { TCP_ACK, TCP_FIN, TCP_RST, TCP_SYN } from "../src/wire/tcp.js";
import { TCP_RECEIVE_FLOOR_BYTES } from "../src/stack/tcp-sockets.js";
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

describe("receive windows promised to a guest that opens flows one by one", () => {
  test("hostile: 32 flows opened one after another are promised at most the budget plus one floor each, and give it all back", async () => {
    const deafSockets: net.Socket[] = [];
    const server = net.createServer({ pauseOnConnect: true }, (s) => {
      s.on("error", () => {});
      deafSockets.push(s);
    });
    await new Promise<void>((r) => server.listen(0, "127.0.0.1", () => r()));
    cleanups.push(async () => {
      for (const s of deafSockets) s.destroy();
      await new Promise<void>((r) => server.close(() => r()));
    });
    const port = (server.address() as net.AddressInfo).port;
    const budget = 2 * MiB;
    const env = await hostileStack({ policy: { hostPorts: [port] }, limits: { tcpReceiveBufferBytes: MiB, tcpReceiveBudgetBytes: budget } });
    cleanups.push(() => env.close());
    // The window each flow was last offered, read from the frames the stack sent (our window scale is 7).
    const offered = new Map<number, number>();
    env.onFrame((f) => {
      if (f.length < 54 || f[23] !== 6 || !(f[47]! & TCP_ACK)) return;
      const synAck = (f[47]! & 0x02) !== 0;
      offered.set(f.readUInt16BE(36), synAck ? f.readUInt16BE(48) : f.readUInt16BE(48) << 7);
    });
    const flows = 32;
    const segment = Buffer.alloc(1460, 0x61);
    const isns: number[] = [];
    for (let f = 0; f < flows; f++) {
      const isn = (await env.open(30000 + f, port, 65535))!;
      expect(isn).toBeDefined();
      isns.push(isn);
      // Data makes the stack acknowledge, with the window this flow gets now that f flows are open before it.
      for (let i = 0; i < 8; i++) {
        env.stack.injectFrame(env.g.tcp({ dst: env.gw, sport: 30000 + f, dport: port, seq: 1001 + i * segment.length, ack: isn + 1, flags: TCP_ACK, payload: segment }));
      }
      await sleep(20);
    }
    // One more segment each, once every host socket has taken what it was given: the windows as they stand.
    for (let f = 0; f < flows; f++) {
      env.stack.injectFrame(env.g.tcp({ dst: env.gw, sport: 30000 + f, dport: port, seq: 1001 + 8 * segment.length, ack: isns[f]! + 1, flags: TCP_ACK, payload: segment }));
    }
    await sleep(50);
    const promised = [...offered.values()].reduce((a, b) => a + b, 0);
    const floor = TCP_RECEIVE_FLOOR_BYTES;
    console.log(`${flows} flows opened one by one, ${budget / MiB} MiB budget: ${(promised / MiB).toFixed(2)} MiB of windows offered (stack's count ${(env.stack.tcpReceiveCommittedBytes / MiB).toFixed(2)} MiB)`);
    expect(offered.size).toBe(flows);
    // Shares alone: the i-th flow kept min(1 MiB, budget / i), ~7.1 MiB here.
    expect(promised).toBeLessThanOrEqual(budget + flows * floor);
    // Every flow can still send: none was offered less than the floor, less the segment its host socket was still
    // writing when the window was computed (a floor counts the application's bytes too) and the window scale's 128.
    expect(Math.min(...offered.values())).toBeGreaterThanOrEqual(floor - segment.length - 128);
    expect(env.stack.tcpReceiveCommittedBytes).toBeLessThanOrEqual(budget + flows * floor);
    // Once a flow's FIN is in, its window promises nothing more: the host socket took every byte, so nothing is
    // committed while the flows linger half-closed (CLOSE_WAIT: the deaf peer never closes).
    for (let f = 0; f < flows; f++) {
      env.stack.injectFrame(env.g.tcp({ dst: env.gw, sport: 30000 + f, dport: port, seq: 1001 + 9 * segment.length, ack: isns[f]! + 1, flags: TCP_ACK | TCP_FIN }));
    }
    await sleep(50);
    expect(env.stack.snapshot().filter((flow) => flow.state === "CLOSE_WAIT")).toHaveLength(flows);
    expect(env.stack.tcpReceiveCommittedBytes).toBe(0);
    // Reset, they are gone and nothing is left counted.
    for (let f = 0; f < flows; f++) env.stack.injectFrame(env.g.tcp({ dst: env.gw, sport: 30000 + f, dport: port, seq: 1002 + 9 * segment.length, flags: TCP_RST }));
    await sleep(20);
    expect(env.stack.snapshot()).toHaveLength(0);
    expect(env.stack.tcpReceiveCommittedBytes).toBe(0);
  });
});

describe("the dial's timeout after a held-up event loop", () => {
  test("a host connection that completed while the stack's process was held up is not declared timed out", async () => {
    const port = await loopbackServer(() => {});
    const env = await hostileStack({ policy: { hostPorts: [port] }, limits: { connectTimeoutMs: 100 } });
    cleanups.push(() => env.close());
    const unreachable: number[] = [];
    env.onFrame((f) => {
      if (f[23] === 1 && f[34] === 3) unreachable.push(f[35]!); // ICMP destination unreachable
    });
    // The SYN starts the dial; then the process is busy (a starved supervisor, a long synchronous step) past the
    // timeout. Node runs the expired timer before it polls for the finished connect.
    env.stack.injectFrame(env.g.tcp({ dst: env.gw, sport: 45000, dport: port, seq: 1000, flags: TCP_SYN, options: { mss: 1460 } }));
    const until = performance.now() + 400;
    while (performance.now() < until) {
      // busy
    }
    await sleep(200);
    expect(unreachable).toEqual([]);
    expect(env.resets.has(45000)).toBe(false);
    expect(env.stack.snapshot().map((f) => f.state)).toEqual(["SYN_RECEIVED"]);
  });
});
