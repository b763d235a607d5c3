import net from "node:net";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { describe, expect, test } from "vitest";
import { NetworkError, NetworkStack } from "../src/index.js";
import { FrameDecoder, encodeFrameLength } from "../src/transport/frame-decoder.js";
import { GuestFrames } from "./frames.js";

async function connect(path: string): Promise<{ sock: net.Socket; frames: Buffer[] }> {
  const sock = net.connect(path);
  sock.on("error", () => {});
  const frames: Buffer[] = [];
  const dec = new FrameDecoder(70000);
  sock.on("data", (d: Buffer) => dec.push(d, (f) => frames.push(Buffer.from(f))));
  await new Promise<void>((r) => sock.once("connect", () => r()));
  return { sock, frames };
}
const settle = () => new Promise((r) => setTimeout(r, 100));

describe("unix-socket frame transport", () => {
  test("answers ARP over the socket; a reconnecting VM replaces the old connection; malformed lengths close it with a log line", async () => {
    const dir = mkdtempSync(join(tmpdir(), `iii-net-transport-${process.pid}-`));
    const logs: string[] = [];
    const stack = new NetworkStack({ slot: 258, log: (l) => logs.push(l) });
    const path = join(dir, "vm.sock");
    await stack.listen(path);
    try {
      expect(Array.from(stack.addresses.gatewayMac)).toEqual([0x02, 0x6d, 0x73, 0x01, 0x02, 0x01]);
      const g = new GuestFrames(stack.addresses);
      const send = (s: net.Socket, f: Buffer) => s.write(Buffer.concat([encodeFrameLength(f.length), f]));

      const a = await connect(path);
      send(a.sock, g.arpWhoHas(stack.addresses.gatewayIp));
      await settle();
      expect(a.frames).toHaveLength(1);
      expect(a.frames[0]!.subarray(6, 12)).toEqual(Buffer.from(stack.addresses.gatewayMac));

      const b = await connect(path);
      await settle();
      expect(a.sock.destroyed || a.sock.readableEnded).toBe(true);
      send(b.sock, g.arpWhoHas(stack.addresses.gatewayIp));
      await settle();
      expect(b.frames).toHaveLength(1);
      expect(logs).toContain("transport: new VM connection replaces the previous one");

      b.sock.write(encodeFrameLength(0x7fffffff));
      await settle();
      expect(logs.some((l) => /malformed frame length 2147483647.*closing/.test(l))).toBe(true);
      expect(b.sock.readableEnded || b.sock.destroyed).toBe(true);

      // The stack survives and takes the next connection.
      const c = await connect(path);
      send(c.sock, g.icmpEcho(stack.addresses.gatewayIp, 1, 1, Buffer.from("ping")));
      await settle();
      expect(c.frames).toHaveLength(1);
      c.sock.destroy();
      await expect(stack.listen(path)).rejects.toBeInstanceOf(NetworkError);
    } finally {
      await stack.close();
      rmSync(dir, { recursive: true, force: true });
    }
  });

  test("idle UDP flows are evicted from the tracker (flow-close event)", async () => {
    const dir = mkdtempSync(join(tmpdir(), `iii-net-udpidle-${process.pid}-`));
    const stack = new NetworkStack({ slot: 5, log: () => {}, policy: { hostPorts: [9] }, limits: { udpIdleTimeoutMs: 800 } });
    await stack.listen(join(dir, "vm.sock"));
    try {
      const closed: string[] = [];
      stack.on("flow-close", (f) => closed.push(`${f.protocol}:${f.guestPort}`));
      const g = new GuestFrames(stack.addresses);
      stack.injectFrame(g.udp(stack.addresses.gatewayIp, 4444, 9, Buffer.from("discard me")));
      expect(stack.snapshot()).toMatchObject([{ protocol: "udp", guestPort: 4444, remoteIp: "100.96.0.21", remotePort: 9, bytesFromGuest: 10 }]);
      await new Promise((r) => setTimeout(r, 2500));
      expect(stack.snapshot()).toEqual([]);
      expect(closed).toEqual(["udp:4444"]);
    } finally {
      await stack.close();
      rmSync(dir, { recursive: true, force: true });
    }
  });

  test("an idle stack holds no timer: the once-a-second sweep runs only while flows exist", async () => {
    const dir = mkdtempSync(join(tmpdir(), `iii-net-sweep-${process.pid}-`));
    const stack = new NetworkStack({ slot: 7, log: () => {}, policy: { hostPorts: [9] }, limits: { udpIdleTimeoutMs: 300 } });
    await stack.listen(join(dir, "vm.sock"));
    try {
      expect(stack.idleSweepArmed).toBe(false);
      const g = new GuestFrames(stack.addresses);
      stack.injectFrame(g.udp(stack.addresses.gatewayIp, 4445, 9, Buffer.from("discard me")));
      expect(stack.snapshot()).toHaveLength(1);
      expect(stack.idleSweepArmed).toBe(true);
      // Evicted by the first sweep past 300 ms idle, which then finds no flow left and stops.
      await new Promise((r) => setTimeout(r, 2300));
      expect(stack.snapshot()).toEqual([]);
      expect(stack.idleSweepArmed).toBe(false);
      // A new flow arms it again (and it still evicts).
      stack.injectFrame(g.udp(stack.addresses.gatewayIp, 4446, 9, Buffer.from("again")));
      expect(stack.idleSweepArmed).toBe(true);
      await new Promise((r) => setTimeout(r, 2300));
      expect(stack.snapshot()).toEqual([]);
      expect(stack.idleSweepArmed).toBe(false);
    } finally {
      await stack.close();
      rmSync(dir, { recursive: true, force: true });
    }
    expect(stack.idleSweepArmed).toBe(false);
  });

  test("at the TCP flow limit a new SYN gets RST and a drop counter", async () => {
    const dir = mkdtempSync(join(tmpdir(), `iii-net-limit-${process.pid}-`));
    const stack = new NetworkStack({ slot: 6, log: () => {}, limits: { maxTcpFlows: 0 } });
    const path = join(dir, "vm.sock");
    await stack.listen(path);
    try {
      const vm = await connect(path);
      const g = new GuestFrames(stack.addresses);
      stack.injectFrame(g.tcp({ dst: 0x5db8d822, sport: 40000, dport: 443, seq: 7, flags: 0x02 }));
      await settle();
      expect(vm.frames).toHaveLength(1);
      const f = vm.frames[0]!;
      expect(f[47]! & 0x04).toBe(0x04); // RST
      expect(f.readUInt32BE(42)).toBe(8); // acknowledges the SYN
      expect(stack.counters.drops["tcp-flow-limit"]).toBe(1);
      vm.sock.destroy();
    } finally {
      await stack.close();
      rmSync(dir, { recursive: true, force: true });
    }
  });

  test("invalid options fail with typed errors", () => {
    expect(() => new NetworkStack({ slot: 70000 })).toThrow(expect.objectContaining({ code: "SlotOutOfRange" }));
    expect(() => new NetworkStack({ slot: 1, mtu: 100 })).toThrow(expect.objectContaining({ code: "InvalidConfig" }));
  });
});
