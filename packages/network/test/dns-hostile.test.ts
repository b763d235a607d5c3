import { mkdtempSync, rmSync } from "node:fs";
import net from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import dnsPacket from "dns-packet";
import { describe, expect, test } from "vitest";
import { NetworkStack } from "../src/index.js";
import { DnsCache } from "../src/dns/dns-cache.js";
import { readAnswer } from "../src/dns/dns-wire.js";
import { FrameDecoder } from "../src/transport/frame-decoder.js";
import { TCP_ACK, TCP_RST, TCP_SYN } from "../src/wire/tcp.js";
import { GuestFrames } from "./frames.js";

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** A stack with a VM connection that records the TCP flags and ISNs the stack sends to each guest port. */
async function stackWithVm() {
  const dir = mkdtempSync(join(tmpdir(), `iii-net-dns-hostile-${process.pid}-`));
  const stack = new NetworkStack({ slot: 11, log: () => {}, dns: { upstreams: ["127.0.0.1:9"], timeoutMs: 5000 } });
  await stack.listen(join(dir, "vm.sock"));
  const vm = net.connect(join(dir, "vm.sock"));
  vm.on("error", () => {});
  const synAcks = new Map<number, number>();
  const resets = new Set<number>();
  const dec = new FrameDecoder(70000);
  vm.on("data", (d: Buffer) =>
    dec.push(d, (f) => {
      if (f.length < 54 || f[23] !== 6) return;
      const flags = f[47]!;
      const port = f.readUInt16BE(36);
      if ((flags & 0x12) === 0x12) synAcks.set(port, f.readUInt32BE(38));
      if (flags & TCP_RST) resets.add(port);
    }),
  );
  await new Promise<void>((r) => vm.once("connect", () => r()));
  const g = new GuestFrames(stack.addresses);
  const open = async (sport: number, window: number): Promise<number | undefined> => {
    stack.injectFrame(g.tcp({ dst: stack.addresses.gatewayIp, sport, dport: 53, seq: 1000, flags: TCP_SYN, options: { mss: 1460, windowScale: 7 } }));
    for (let i = 0; i < 100 && !synAcks.has(sport) && !resets.has(sport); i++) await sleep(5);
    const isn = synAcks.get(sport);
    if (isn !== undefined) stack.injectFrame(g.tcp({ dst: stack.addresses.gatewayIp, sport, dport: 53, seq: 1001, ack: isn + 1, flags: TCP_ACK, window }));
    return isn;
  };
  return {
    stack,
    g,
    open,
    resets,
    async close() {
      vm.destroy();
      await stack.close();
      rmSync(dir, { recursive: true, force: true });
    },
  };
}

describe("DNS over TCP against a hostile guest", () => {
  test("hostile: pipelined queries whose answers are never read do not queue without bound; the session is cut", async () => {
    const env = await stackWithVm();
    try {
      const isn = await env.open(41000, 0);
      expect(isn).toBeDefined();
      const q = dnsPacket.encode({ type: "query", id: 7, flags: dnsPacket.RECURSION_DESIRED, questions: [{ type: "A", name: "host.iii.internal" }] });
      const framed = Buffer.concat([Buffer.from([q.length >> 8, q.length & 0xff]), q]);
      const perSegment = Math.floor(1400 / framed.length);
      const segment = Buffer.concat(Array.from({ length: perSegment }, () => framed));
      const before = process.memoryUsage().arrayBuffers;
      let seq = 1001;
      // 16 MiB of queries, advertising a zero window: the guest reads no answer.
      for (let sent = 0; sent < 16 * 1024 * 1024 && !env.resets.has(41000); sent += segment.length) {
        env.stack.injectFrame(env.g.tcp({ dst: env.stack.addresses.gatewayIp, sport: 41000, dport: 53, seq, ack: isn! + 1, flags: TCP_ACK, window: 0, payload: segment }));
        seq += segment.length;
        if ((sent / segment.length) % 256 === 0) await sleep(0);
      }
      await sleep(100);
      const grew = process.memoryUsage().arrayBuffers - before;
      const answered = env.stack.dns.counters.queries;
      console.log(`queries taken ${answered}, reset ${env.resets.has(41000)}, arrayBuffers +${(grew / 1048576).toFixed(1)} MiB`);
      // 64 KiB of queued answers (~70 B each) + 16 in progress, not the ~450,000 queries sent.
      expect(answered).toBeLessThan(2000);
      expect(env.resets.has(41000)).toBe(true);
      expect(grew).toBeLessThan(32 * 1024 * 1024);
    } finally {
      await env.close();
    }
  });

  test("hostile: 1-byte segments trickled into a blocked session cost the same at 200 KB pending as at the start", async () => {
    const env = await stackWithVm();
    try {
      const isn = await env.open(43000, 0);
      expect(isn).toBeDefined();
      const q = dnsPacket.encode({ type: "query", id: 7, flags: dnsPacket.RECURSION_DESIRED, questions: [{ type: "A", name: "host.iii.internal" }] });
      const framed = Buffer.concat([Buffer.from([q.length >> 8, q.length & 0xff]), q]);
      const segment = Buffer.concat(Array.from({ length: 37 }, () => framed));
      let seq = 1001;
      const send = (payload: Buffer) => {
        env.stack.injectFrame(env.g.tcp({ dst: env.stack.addresses.gatewayIp, sport: 43000, dport: 53, seq, ack: isn! + 1, flags: TCP_ACK, window: 0, payload }));
        seq += payload.length;
      };
      // 64 KiB of answers wait for a guest that reads none: the session takes no more queries, its input grows.
      for (let i = 0; i < 60; i++) {
        send(segment);
        await sleep(1);
      }
      await sleep(50);
      const one = Buffer.from([0x41]);
      const usPerFrame: number[] = [];
      for (let round = 0; round < 10; round++) {
        const t0 = performance.now();
        for (let i = 0; i < 20_000; i++) send(one);
        usPerFrame.push(((performance.now() - t0) * 1000) / 20_000);
        await sleep(0);
      }
      console.log(`us per 1-byte frame, per 20,000 (0 → 200 KB pending): ${usPerFrame.map((x) => x.toFixed(1)).join(" ")}`);
      expect(env.resets.has(43000)).toBe(false);
      // Concatenating the backlog for each segment: 39 us at the start, 104 us at 200 KB.
      expect(usPerFrame[9]!).toBeLessThan(40);
    } finally {
      await env.close();
    }
  });

  test("hostile: at most 8 DNS-over-TCP sessions at once; the 9th is refused with RST", async () => {
    const env = await stackWithVm();
    try {
      for (let i = 0; i < 8; i++) expect(await env.open(42000 + i, 65535)).toBeDefined();
      expect(await env.open(42008, 65535)).toBeUndefined();
      expect(env.resets.has(42008)).toBe(true);
      expect(env.stack.counters.drops["dns-tcp-sessions"]).toBe(1);
    } finally {
      await env.close();
    }
  });
});

describe("DNS answer cache", () => {
  const answer = (name: string, txtBytes: number): Buffer =>
    dnsPacket.encode({
      type: "response",
      id: 1,
      flags: dnsPacket.RECURSION_DESIRED | dnsPacket.RECURSION_AVAILABLE,
      questions: [{ type: "TXT", name }],
      answers: [{ type: "TXT", name, ttl: 300, data: Array.from({ length: Math.ceil(txtBytes / 250) }, () => "x".repeat(250)) }],
    });

  test("hostile: distinct large answers stay within the byte budget; answers over 4 KiB are not cached", () => {
    const cache = new DnsCache(10_000, 300, 60, Date.now, 1024 * 1024);
    for (let i = 0; i < 2000; i++) {
      const m = answer(`n${i}.attacker.example`, 3500);
      cache.put(`n${i}|TXT`, m, readAnswer(m)!);
    }
    expect(cache.sizeBytes).toBeLessThanOrEqual(1024 * 1024);
    expect(cache.size).toBeGreaterThan(200);
    // The newest stayed, the oldest went.
    expect(cache.get("n1999|TXT", 9)).toBeDefined();
    expect(cache.get("n0|TXT", 9)).toBeUndefined();
    const big = answer("big.attacker.example", 60_000);
    cache.put("big|TXT", big, readAnswer(big)!);
    expect(cache.get("big|TXT", 9)).toBeUndefined();
  });
});
