import dgram from "node:dgram";
import net from "node:net";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, test } from "vitest";
import { NetworkStack } from "../src/index.js";
import { DEFAULT_LIMITS } from "../src/stack/config.js";
import { TCP_RECEIVE_FLOOR_BYTES } from "../src/stack/tcp-sockets.js";
import { FrameDecoder } from "../src/transport/frame-decoder.js";
import { TCP_ACK, TCP_FIN, TCP_PSH, TCP_RST, TCP_SYN } from "../src/wire/tcp.js";
import { GuestFrames, fixChecksums } from "./frames.js";

const FRAMES = 1_000_000;

/** xorshift32: reproducible fuzzing (seed printed on failure). */
function rng(seed: number) {
  let x = seed >>> 0 || 1;
  const next = () => {
    x ^= x << 13;
    x >>>= 0;
    x ^= x >>> 17;
    x ^= x << 5;
    x >>>= 0;
    return x;
  };
  return { next, int: (n: number) => next() % n, chance: (p: number) => next() / 0x100000000 < p };
}

describe("fuzz: random and mutated frames", () => {
  const dir = mkdtempSync(join(tmpdir(), `iii-net-fuzz-${process.pid}-`));
  let echo: net.Server;
  let blackhole: dgram.Socket;
  let stack: NetworkStack;
  let vm: net.Socket;
  const seen = { synAcks: new Map<number, number>() };

  beforeAll(async () => {
    echo = net.createServer({ allowHalfOpen: true }, (s) => {
      s.on("error", () => {});
      s.pipe(s);
    });
    await new Promise<void>((r) => echo.listen(0, "127.0.0.1", () => r()));
    blackhole = dgram.createSocket("udp4");
    await new Promise<void>((r) => blackhole.bind(0, "127.0.0.1", () => r()));
    const echoPort = (echo.address() as net.AddressInfo).port;
    stack = new NetworkStack({
      slot: 3,
      log: () => {},
      policy: { hostPorts: [echoPort] },
      dns: { upstreams: [`127.0.0.1:${blackhole.address().port}`], timeoutMs: 200, maxConcurrent: 32, maxQueue: 256 },
      limits: { maxTcpFlows: 256, maxUdpFlows: 32, timeWaitMs: 100, connectTimeoutMs: 500, tcpMaxRetries: 3 },
    });
    await stack.listen(join(dir, "vm.sock"));
    // A reader on the VM side: output frames are consumed, and SYN-ACKs teach us the ISS.
    vm = net.connect(join(dir, "vm.sock"));
    const dec = new FrameDecoder(70000);
    vm.on("data", (d: Buffer) => {
      dec.push(d, (f) => {
        if (f.length >= 54 && f[23] === 6 && (f[47]! & 0x12) === 0x12) seen.synAcks.set(f.readUInt16BE(36), f.readUInt32BE(38));
      });
    });
    await new Promise<void>((r) => vm.once("connect", () => r()));
    await new Promise((r) => setTimeout(r, 50));
  });

  afterAll(async () => {
    vm?.destroy();
    await stack?.close();
    echo?.close();
    blackhole?.close();
    rmSync(dir, { recursive: true, force: true });
  });

  test(`${FRAMES.toLocaleString()} frames: no exception escapes, memory and flows stay bounded`, async () => {
    const seed = Number(process.env.FUZZ_SEED ?? Date.now() % 0xffffffff);
    const r = rng(seed);
    const a = stack.addresses;
    const g = new GuestFrames(a);
    const echoPort = (echo.address() as net.AddressInfo).port;
    const uncaught: unknown[] = [];
    const onUncaught = (e: unknown) => uncaught.push(e);
    process.on("uncaughtException", onUncaught);
    process.on("unhandledRejection", onUncaught);

    // Real connections to mutate around: handshake 16 flows to the echo server.
    const flows: Array<{ sport: number; seq: number; ack: number }> = [];
    for (let i = 0; i < 16; i++) {
      const sport = 40000 + i;
      stack.injectFrame(g.tcp({ dst: a.gatewayIp, sport, dport: echoPort, seq: 1000, flags: TCP_SYN, options: { mss: 1460, windowScale: 7, sackPermitted: true } }));
    }
    const deadline = Date.now() + 5000;
    while (seen.synAcks.size < 16 && Date.now() < deadline) await new Promise((res) => setTimeout(res, 10));
    for (const [sport, iss] of seen.synAcks) {
      stack.injectFrame(g.tcp({ dst: a.gatewayIp, sport, dport: echoPort, seq: 1001, ack: iss + 1, flags: TCP_ACK }));
      flows.push({ sport, seq: 1001, ack: iss + 1 });
    }
    expect(flows.length).toBe(16);

    const payload = Buffer.alloc(2000, 0x5a);
    const templates: Array<() => Buffer> = [
      () => g.arpWhoHas(a.gatewayIp),
      () => g.arpWhoHas(r.next()),
      () => g.icmpEcho(a.gatewayIp, r.int(65536), r.int(65536), payload.subarray(0, r.int(200))),
      () => g.icmpEcho(r.next(), 1, 1, payload.subarray(0, 8)),
      () => g.dhcp(1 + r.int(8), r.next()),
      () => g.udp(r.chance(0.5) ? a.gatewayIp : r.next(), 1024 + r.int(60000), 53, Buffer.from("0001010000010000000000000377777706676f6f676c6503636f6d0000010001", "hex")),
      () => g.udp(r.chance(0.3) ? a.gatewayIp : r.next(), 1024 + r.int(60000), r.int(65536), payload.subarray(0, r.int(1400))),
      () => g.tcp({ dst: r.chance(0.3) ? a.gatewayIp : r.next(), sport: 1024 + r.int(60000), dport: r.chance(0.5) ? echoPort : r.int(65536), seq: r.next(), flags: TCP_SYN }),
      () => g.tcp({ dst: r.next(), sport: r.int(65536), dport: r.int(65536), seq: r.next(), ack: r.next(), flags: r.int(64) }),
      () => {
        // Segments for live connections: overlapping, out of window, odd flags, data.
        const f = flows[r.int(flows.length)]!;
        const delta = r.chance(0.6) ? r.int(4000) - 2000 : r.next();
        const flags = r.chance(0.7) ? TCP_ACK | (r.chance(0.3) ? TCP_PSH : 0) : r.int(64) & ~(TCP_RST | TCP_FIN | TCP_SYN) | TCP_ACK;
        const len = r.int(1460);
        const seg = g.tcp({ dst: a.gatewayIp, sport: f.sport, dport: echoPort, seq: f.seq + delta, ack: f.ack + (r.chance(0.8) ? 0 : r.int(3000) - 1500), flags, window: r.int(65536), payload: payload.subarray(0, len) });
        if (delta === 0 && r.chance(0.5)) f.seq += len;
        return seg;
      },
    ];

    const overCommitted: number[] = [];
    const heapBefore = process.memoryUsage().heapUsed;
    let maxTcp = 0;
    let maxUdp = 0;
    const t0 = performance.now();
    for (let i = 0; i < FRAMES; i++) {
      let f: Buffer;
      const kind = r.int(10);
      if (kind === 0) {
        f = Buffer.allocUnsafe(r.int(120));
        for (let j = 0; j < f.length; j++) f[j] = r.int(256);
      } else {
        f = templates[r.int(templates.length)]!();
        const m = r.int(6);
        if (m === 1) f = f.subarray(0, r.int(f.length + 1)); // truncated headers
        else if (m === 2) {
          const at = 14 + r.int(Math.max(1, f.length - 14));
          if (at < f.length) f[at] = f[at]! ^ (1 << r.int(8)); // bad checksum
        }
        else if (m === 3) {
          for (let k = 0; k < 4; k++) f[r.int(f.length)] = r.int(256);
          fixChecksums(f); // mutated but checksum-valid: reaches the parsers' logic
        } else if (m === 4 && f.length > 47) {
          f[47] = r.int(256); // odd TCP flag combinations
          fixChecksums(f);
        }
      }
      stack.injectFrame(f);
      if ((i & 0x3fff) === 0) {
        maxTcp = Math.max(maxTcp, stack.tracker.count("tcp"));
        maxUdp = Math.max(maxUdp, stack.tracker.count("udp"));
        // What the flows have promised the guest stays within the receive budget plus one floor per flow.
        const bound = DEFAULT_LIMITS.tcpReceiveBudgetBytes + stack.tracker.count("tcp") * TCP_RECEIVE_FLOOR_BYTES;
        if (stack.tcpReceiveCommittedBytes > bound || stack.tcpReceiveCommittedBytes < 0) overCommitted.push(stack.tcpReceiveCommittedBytes);
        await new Promise((res) => setImmediate(res)); // let sockets, timers and DNS make progress
      }
    }
    const secs = (performance.now() - t0) / 1000;
    await new Promise((res) => setTimeout(res, 300));
    process.off("uncaughtException", onUncaught);
    process.off("unhandledRejection", onUncaught);
    const heapGrowth = process.memoryUsage().heapUsed - heapBefore;
    console.log(
      `fuzz seed ${seed}: ${FRAMES} frames in ${secs.toFixed(1)} s (${Math.round(FRAMES / secs)} frames/s), ` +
        `heap +${(heapGrowth / 1048576).toFixed(1)} MiB, peak flows tcp ${maxTcp} udp ${maxUdp}, drops ${JSON.stringify(stack.counters.drops)}`,
    );
    expect(uncaught).toEqual([]);
    expect(stack.counters.drops["internal-error"]).toBeUndefined();
    expect(stack.counters.framesIn).toBeGreaterThanOrEqual(FRAMES);
    expect(maxTcp).toBeLessThanOrEqual(256);
    expect(maxUdp).toBeLessThanOrEqual(32);
    expect(heapGrowth).toBeLessThan(256 * 1024 * 1024);
    expect(overCommitted).toEqual([]);
    // Every flow gives its promise back when it ends, whichever way it ended.
    await stack.close();
    expect(stack.tcpReceiveCommittedBytes).toBe(0);
  }, 240_000);
});
