import dgram from "node:dgram";
import type { FlowEntry } from "../conntrack/connection-tracker.js";
import type { StackContext } from "../stack/context.js";
import { countDrop } from "../stack/counters.js";
import { ICMP_DEST_UNREACHABLE, ICMP_UNREACH_ADMIN_PROHIBITED, ICMP_UNREACH_PORT } from "../wire/icmp.js";
import { ipToString } from "../wire/ip-address.js";
import type { Ipv4Header } from "../wire/ipv4.js";

/**
 * Guest datagrams handed to host sockets and not sent yet, over all flows, past which the relay drops. A host socket
 * whose kernel send buffer is full (the uplink is slower than the VM link) makes libuv queue every send, with its copy
 * of the payload, without limit: measured 200,000 × 1400 B from the guest → +271 MiB toward a 10 Mbit/s link.
 */
const MAX_UNSENT_BYTES = 4 * 1024 * 1024;

interface UdpFlow {
  key: string;
  remoteIp: number;
  remotePort: number;
  guestPort: number;
  socket: dgram.Socket;
  entry: FlowEntry;
  dialHost: string;
  dialPort: number;
  /** Bytes handed to `socket` whose send has not completed. */
  unsent: number;
  closed: boolean;
}

/**
 * Relays the guest's UDP to host sockets, one socket per (destination, guest port) flow, after
 * the egress policy; replies come back only from the address dialled. DNS (port 53) is answered
 * by the interceptor instead.
 */
export class UdpRelay {
  private readonly flows = new Map<string, UdpFlow>();
  /** Sum of the flows' `unsent`. */
  private unsentBytes = 0;

  constructor(private readonly ctx: StackContext) {}

  /** Open flows. */
  get size(): number {
    return this.flows.size;
  }

  /** A DNS query from the guest: answered by the interceptor, from the address it was sent to. */
  answerDns(ip: Ipv4Header, srcPort: number, query: Buffer): void {
    const ctx = this.ctx;
    ctx.counters.dnsQueries++;
    const replyFrom = ip.dst;
    // Copied: the query is a view of the VM's frame, and answering outlives this call.
    void ctx.dns.answer(Buffer.from(query), 4096).then(
      (resp) =>
        ctx.guard(() => {
          if (!resp) return countDrop(ctx.counters, "dns-too-short");
          if (!ctx.closed) ctx.out.sendUdp(replyFrom, 53, srcPort, resp);
        }),
      (err: unknown) =>
        ctx.guard(() => {
          throw err;
        }),
    );
  }

  relay(frame: Buffer, ip: Ipv4Header, srcPort: number, dstPort: number, payload: Uint8Array): void {
    const ctx = this.ctx;
    const key = `${ip.dst}:${dstPort}:${srcPort}`;
    let flow = this.flows.get(key);
    if (!flow) {
      if (dstPort === 0) {
        // dgram.send throws on port 0 (ERR_SOCKET_BAD_PORT): refuse it before a flow and a socket exist.
        countDrop(ctx.counters, "udp-port-zero");
        ctx.out.sendIcmpError(frame, ip, ICMP_DEST_UNREACHABLE, ICMP_UNREACH_PORT);
        return;
      }
      const d = ctx.policy.decide("udp", ip.dst, dstPort, ctx.addresses.gatewayIp);
      if (!d.allowed) {
        ctx.deny("udp", srcPort, ip.dst, dstPort, d.rule);
        ctx.out.sendIcmpError(frame, ip, ICMP_DEST_UNREACHABLE, ICMP_UNREACH_ADMIN_PROHIBITED);
        return;
      }
      if (!ctx.tracker.canOpen("udp")) {
        countDrop(ctx.counters, "udp-flow-limit");
        ctx.out.sendIcmpError(frame, ip, ICMP_DEST_UNREACHABLE, ICMP_UNREACH_PORT);
        return;
      }
      const socket = dgram.createSocket("udp4");
      const entry = ctx.tracker.open({
        protocol: "udp",
        direction: "outbound",
        guestIp: ipToString(ctx.addresses.guestIp),
        guestPort: srcPort,
        remoteIp: ipToString(ip.dst),
        remotePort: dstPort,
        state: "OPEN",
      });
      const f: UdpFlow = {
        key,
        remoteIp: ip.dst,
        remotePort: dstPort,
        guestPort: srcPort,
        socket,
        entry,
        dialHost: d.dialHost,
        dialPort: d.dialPort,
        unsent: 0,
        closed: false,
      };
      flow = f;
      this.flows.set(key, f);
      ctx.counters.udpOpened++;
      socket.on("message", (msg, rinfo) =>
        ctx.guard(() => {
          if (rinfo.port !== f.dialPort || rinfo.address !== f.dialHost) return;
          f.entry.bytesToGuest += msg.length;
          ctx.tracker.touch(f.entry);
          ctx.out.sendUdp(f.remoteIp, f.remotePort, f.guestPort, msg);
        }),
      );
      socket.on("error", () => {
        // Connection-refused style errors on unconnected UDP sockets are not reported per peer; ignore.
      });
      ctx.flowOpened(entry);
    }
    ctx.tracker.touch(flow.entry);
    if (this.unsentBytes + payload.length > MAX_UNSENT_BYTES) return countDrop(ctx.counters, "udp-send-backpressure");
    flow.entry.bytesFromGuest += payload.length;
    const f = flow;
    const n = payload.length;
    f.unsent += n;
    this.unsentBytes += n;
    // The callback also takes send errors (EMSGSIZE and the like), which the socket's error event used to swallow.
    f.socket.send(Buffer.from(payload), f.dialPort, f.dialHost, () => this.sent(f, n));
  }

  private sent(f: UdpFlow, n: number): void {
    if (f.closed) return;
    f.unsent -= n;
    this.unsentBytes -= n;
  }

  /** Closes flows idle for longer than the limit. */
  sweep(now: number): void {
    for (const f of [...this.flows.values()]) {
      if (now - f.entry.lastActivityAt > this.ctx.limits.udpIdleTimeoutMs) this.closeFlow(f);
    }
  }

  private closeFlow(f: UdpFlow): void {
    this.flows.delete(f.key);
    // Sends still queued are cancelled with the socket.
    f.closed = true;
    this.unsentBytes -= f.unsent;
    f.unsent = 0;
    f.socket.close();
    this.ctx.flowClosed(f.entry);
  }

  /** Stack shutdown: closes every socket (no events). */
  close(): void {
    for (const f of this.flows.values()) f.socket.close();
    this.flows.clear();
  }
}
