import net from "node:net";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { describe, expect, test } from "vitest";
import { NetworkStack, ipToString } from "../src/index.js";
import { FrameDecoder } from "../src/transport/frame-decoder.js";
import { TCP_ACK, TCP_SYN } from "../src/wire/tcp.js";
import { GuestFrames } from "./frames.js";
import { harnessUnavailable, startGuest } from "./harness.js";

/** Active handle counts by type; stdout/stderr are touched first because Node creates them lazily. */
function resources(): Record<string, number> {
  void process.stdout.writableLength;
  void process.stderr.writableLength;
  const out: Record<string, number> = {};
  for (const r of process.getActiveResourcesInfo()) out[r] = (out[r] ?? 0) + 1;
  return out;
}

/** Resource types whose count grew (other tests' and vitest's own timers may only go away). */
function increased(before: Record<string, number>, after: Record<string, number>): Record<string, number> {
  const out: Record<string, number> = {};
  for (const [k, v] of Object.entries(after)) if (v > (before[k] ?? 0)) out[k] = v - (before[k] ?? 0);
  return out;
}

describe("close() releases every handle", () => {
  test("after flows of every kind and published ports, no resource stays active", async () => {
    const dir = mkdtempSync(join(tmpdir(), `iii-net-close-${process.pid}-`));
    const echo = net.createServer((s) => {
      s.on("error", () => {});
      s.pipe(s);
    });
    await new Promise<void>((r) => echo.listen(0, "127.0.0.1", () => r()));
    const echoPort = (echo.address() as net.AddressInfo).port;
    const freePort = await new Promise<number>((r) => {
      const s = net.createServer().listen(0, "127.0.0.1", () => {
        const p = (s.address() as net.AddressInfo).port;
        s.close(() => r(p));
      });
    });
    await new Promise((r) => setTimeout(r, 200));
    const before = resources();

    const stack = new NetworkStack({
      slot: 9,
      log: () => {},
      policy: { hostPorts: [echoPort] },
      dns: { upstreams: ["127.0.0.1:9"], timeoutMs: 5000 },
      ports: [{ hostPort: freePort, guestPort: 80 }],
      pcapPath: join(dir, "trace.pcap"),
    });
    await stack.listen(join(dir, "vm.sock"));
    const vm = net.connect(join(dir, "vm.sock"));
    vm.on("error", () => {});
    const synAcks = new Map<number, number>();
    const dec = new FrameDecoder(70000);
    vm.on("data", (d: Buffer) =>
      dec.push(d, (f) => {
        if (f.length >= 54 && f[23] === 6 && (f[47]! & 0x12) === 0x12) synAcks.set(f.readUInt16BE(36), f.readUInt32BE(38));
      }),
    );
    await new Promise<void>((r) => vm.once("connect", () => r()));
    const g = new GuestFrames(stack.addresses);
    const a = stack.addresses;
    // An established TCP flow (host socket open), a dial in progress, a UDP flow, a pending DNS
    // query (upstream never answers), a published-port connection.
    stack.injectFrame(g.tcp({ dst: a.gatewayIp, sport: 40001, dport: echoPort, seq: 1, flags: TCP_SYN, options: { mss: 1460 } }));
    for (let i = 0; i < 100 && !synAcks.has(40001); i++) await new Promise((r) => setTimeout(r, 10));
    stack.injectFrame(g.tcp({ dst: a.gatewayIp, sport: 40001, dport: echoPort, seq: 2, ack: synAcks.get(40001)! + 1, flags: TCP_ACK }));
    stack.injectFrame(g.tcp({ dst: 0xc0000250, sport: 40002, dport: 81, seq: 1, flags: TCP_SYN }));
    stack.injectFrame(g.udp(a.gatewayIp, 5000, echoPort, Buffer.from("x")));
    stack.injectFrame(g.udp(a.gatewayIp, 5001, 53, Buffer.from("0001010000010000000000000377777706676f6f676c6503636f6d0000010001", "hex")));
    const client = net.connect(freePort, "127.0.0.1");
    client.on("error", () => {});
    await new Promise((r) => setTimeout(r, 100));
    expect(stack.snapshot().length).toBeGreaterThanOrEqual(3);
    expect(ipToString(a.gatewayIp)).toBe("100.96.0.37");

    await stack.close();
    vm.destroy();
    client.destroy();
    await new Promise((r) => setTimeout(r, 100));
    const after = resources();
    echo.close();
    rmSync(dir, { recursive: true, force: true });
    expect(increased(before, after)).toEqual({});
  });
});

const skip = harnessUnavailable();
describe.skipIf(skip)("close() with a real guest attached", () => {
  test("no handle survives a stack that carried real traffic", async () => {
    const before = resources();
    const env = await startGuest();
    let r: { stdout: string };
    try {
      r = await env.guest.sh(`dig +tries=1 +time=1 @${ipToString(env.stack.addresses.gatewayIp)} example.test; busybox ping -c1 -W1 ${ipToString(env.stack.addresses.gatewayIp)}`);
    } finally {
      await env.close();
    }
    expect(r.stdout).toContain("1 packets received");
    await new Promise((res) => setTimeout(res, 100));
    expect(increased(before, resources())).toEqual({});
  });
});
