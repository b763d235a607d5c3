import { mkdtempSync, rmSync } from "node:fs";
import net from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { NetworkStack, type NetworkStackOptions } from "../src/index.js";
import { FrameDecoder } from "../src/transport/frame-decoder.js";
import { TCP_ACK, TCP_RST, TCP_SYN, type TcpOptions } from "../src/wire/tcp.js";
import { GuestFrames } from "./frames.js";

export const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/**
 * A real NetworkStack with a unix-socket "VM" reading its output, for tests that play a hostile guest by injecting
 * frames (no guest kernel in the way). Records the SYN-ACK ISNs, RSTs and payload bytes the stack sends to each guest
 * port.
 */
export async function hostileStack(options: Partial<NetworkStackOptions> = {}) {
  const dir = mkdtempSync(join(tmpdir(), `iii-net-hostile-${process.pid}-`));
  const stack = new NetworkStack({ slot: 11, log: () => {}, dns: { upstreams: ["127.0.0.1:9"], timeoutMs: 5000 }, ...options });
  await stack.listen(join(dir, "vm.sock"));
  const vm = net.connect(join(dir, "vm.sock"));
  vm.on("error", () => {});
  const synAcks = new Map<number, number>();
  const resets = new Set<number>();
  /** TCP payload bytes sent to each guest port. */
  const dataTo = new Map<number, number>();
  const listeners: Array<(frame: Buffer) => void> = [];
  const dec = new FrameDecoder(70000);
  vm.on("data", (d: Buffer) =>
    dec.push(d, (f) => {
      for (const l of listeners) l(f);
      if (f.length < 54 || f[23] !== 6) return;
      const flags = f[47]!;
      const port = f.readUInt16BE(36);
      if ((flags & 0x12) === 0x12) synAcks.set(port, f.readUInt32BE(38));
      if (flags & TCP_RST) resets.add(port);
      const payload = f.readUInt16BE(16) - 20 - (f[46]! >>> 4) * 4;
      if (payload > 0) dataTo.set(port, (dataTo.get(port) ?? 0) + payload);
    }),
  );
  await new Promise<void>((r) => vm.once("connect", () => r()));
  const g = new GuestFrames(stack.addresses);
  const gw = stack.addresses.gatewayIp;
  /** Handshake from guest port `sport` to the gateway's `dport` (seq 1000); resolves with the stack's ISN, or undefined if refused. */
  const open = async (sport: number, dport: number, window: number, options: TcpOptions = { mss: 1460, windowScale: 7 }): Promise<number | undefined> => {
    stack.injectFrame(g.tcp({ dst: gw, sport, dport, seq: 1000, flags: TCP_SYN, options }));
    for (let i = 0; i < 400 && !synAcks.has(sport) && !resets.has(sport); i++) await sleep(5);
    const isn = synAcks.get(sport);
    if (isn !== undefined) stack.injectFrame(g.tcp({ dst: gw, sport, dport, seq: 1001, ack: isn + 1, flags: TCP_ACK, window }));
    return isn;
  };
  return {
    stack,
    g,
    gw,
    open,
    resets,
    dataTo,
    /** Calls `fn` with every frame the stack sends to the VM. */
    onFrame(fn: (frame: Buffer) => void) {
      listeners.push(fn);
    },
    async close() {
      vm.destroy();
      await stack.close();
      rmSync(dir, { recursive: true, force: true });
    },
  };
}
