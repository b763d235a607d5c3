import { randomInt } from "node:crypto";
import type { FlowEntry } from "../conntrack/connection-tracker.js";
import type { TcpApplication } from "../proxy/host-bridge.js";
import {
  type OutgoingSegment,
  type TcpCloseReason,
  TcpConnection,
  type TcpConnectionConfig,
  type TcpConnectionHooks,
} from "../tcp/tcp-connection.js";
import { ETHERNET_HEADER_LENGTH, ETHERTYPE_IPV4, writeEthernet } from "../wire/ethernet.js";
import { ipToString } from "../wire/ip-address.js";
import { IP_PROTO_TCP, IPV4_HEADER_LENGTH, type Ipv4Header, writeIpv4 } from "../wire/ipv4.js";
import { ICMP_DEST_UNREACHABLE, ICMP_UNREACH_HOST, ICMP_UNREACH_NET } from "../wire/icmp.js";
import {
  TCP_ACK,
  TCP_FIN,
  TCP_RST,
  TCP_SYN,
  type TcpSegment,
  finishTcpChecksum,
  parseTcp,
  tcpOptionsLength,
  writeTcpHeader,
} from "../wire/tcp.js";
import type { StackContext } from "./context.js";
import { countDrop } from "./counters.js";

/**
 * TCP stops producing new segments while this much is queued toward the VM, so a fast host
 * cannot bury the VM link (the transport only drops beyond 32 MiB, for non-TCP floods).
 */
const TRANSPORT_HIGH_WATER_BYTES = 2 * 1024 * 1024;
/** The least receive window a flow gets however many share the budget: it still moves. */
export const TCP_RECEIVE_FLOOR_BYTES = 16 * 1024;

/** How long an ACK for a small guest message may wait for the host's answer to carry it. */
const DELAYED_ACK_MS = 1;

interface TcpFlow {
  key: string;
  remoteIp: number;
  remotePort: number;
  guestPort: number;
  entry: FlowEntry;
  conn: TcpConnection | undefined;
  app: TcpApplication | undefined;
  /** While a forwarder holds the request: releases what it holds (dial socket, timer). */
  cancel: (() => void) | undefined;
}

/**
 * A guest's SYN for which no connection exists, handed to the forwarder. The forwarder decides
 * (policy), may `hold()` it while it dials (the flow is tracked, retransmitted SYNs are absorbed,
 * a guest RST or stack shutdown cancels it), then `complete()`s it with the application side
 * (SYN-ACK to the guest), or answers `reset()` (RST) or `unreachable()` (ICMP).
 */
export class ConnectionRequest {
  /** Destination the guest asked for. */
  readonly remoteIp: number;
  readonly remotePort: number;
  readonly guestPort: number;
  private flow: TcpFlow | undefined;
  private done = false;
  private readonly syn: TcpSegment;
  /** The IP header + 8 bytes of the SYN, for an ICMP error later (RFC 792). */
  private readonly quote: Buffer;

  constructor(
    private readonly sockets: TcpSocketSet,
    private readonly key: string,
    private readonly ip: Ipv4Header,
    syn: TcpSegment,
    frame: Buffer,
  ) {
    this.remoteIp = ip.dst;
    this.remotePort = syn.dstPort;
    this.guestPort = syn.srcPort;
    this.syn = { ...syn, options: { ...syn.options }, payload: new Uint8Array(0) };
    this.quote = Buffer.from(frame.subarray(ETHERNET_HEADER_LENGTH, ETHERNET_HEADER_LENGTH + ip.headerLength + 8));
  }

  /** Whether the request can still be answered (not answered yet, not cancelled). */
  get live(): boolean {
    if (this.done) return false;
    return this.flow === undefined || this.sockets.holds(this.flow);
  }

  /** Tracks the flow while the forwarder works on it; `onCancel` runs if it goes away first. */
  hold(onCancel: () => void): void {
    if (this.flow) return;
    this.flow = this.sockets.openFlow(this.key, this.remoteIp, this.remotePort, this.guestPort, "outbound", "CONNECTING");
    this.flow.cancel = onCancel;
  }

  /** Accepts the guest's SYN (SYN-ACK) with `app` as the other end of the connection. */
  complete(app: TcpApplication): TcpConnection {
    this.done = true;
    let flow = this.flow;
    if (flow) {
      flow.cancel = undefined;
      flow.entry.state = "SYN_RECEIVED";
    } else {
      flow = this.sockets.openFlow(this.key, this.remoteIp, this.remotePort, this.guestPort, "outbound", "CONNECTING");
    }
    return this.sockets.accept(flow, app, this.syn);
  }

  /** Refuses with RST (connection refused or denied by policy). */
  reset(): void {
    this.done = true;
    this.sockets.out.sendRstFor(this.ip, this.syn);
    if (this.flow) this.sockets.remove(this.flow, "refused");
  }

  /** Refuses with ICMP destination unreachable (host, or network when `net`). */
  unreachable(net: boolean): void {
    this.done = true;
    this.sockets.out.sendIcmpQuote(this.quote, this.remoteIp, ICMP_DEST_UNREACHABLE, net ? ICMP_UNREACH_NET : ICMP_UNREACH_HOST);
    if (this.flow) this.sockets.remove(this.flow, "unreachable");
  }
}

/**
 * The TCP side of the interface: the flow table keyed by (remote ip, remote port, guest port),
 * demultiplexing of guest segments to connections, SYNs without a connection handed to the
 * forwarder as requests, and the hosting of each `TcpConnection` (segment output, ACKs coalesced
 * to one per burst, back-pressure from the VM link, the shared send-buffer budget).
 */
export class TcpSocketSet {
  private readonly flows = new Map<string, TcpFlow>();
  private readonly ackQueue = new Set<TcpConnection>();
  /** Connections waiting for room in the transport's write buffer. */
  private readonly blockedSenders = new Set<TcpConnection>();
  private flushScheduled: NodeJS.Immediate | undefined;
  /** Connections whose ACK waits (delayed ACK), all flushed by one shared timer. */
  private readonly delayedAcks = new Set<TcpConnection>();
  private delayedAckTimer: NodeJS.Timeout | undefined;
  private nextInboundPort = 49152 + randomInt(16000);
  /** Bytes in all the connections' send buffers: host data read ahead of the guest's ACKs. */
  private sendQueuedBytes = 0;
  /** The total reached the send budget: connections told to stop since then are woken once it falls below half. */
  private sendBudgetHit = false;
  /**
   * What all connections have promised the guest and not yet handed to the host: the bytes their applications
   * hold plus their advertised windows (a window once advertised is never taken back).
   */
  receiveCommittedBytes = 0;
  /** Set by the owner: where SYNs without a connection go. */
  forward: (req: ConnectionRequest) => void = (req) => req.reset();

  constructor(private readonly ctx: StackContext) {}

  /** Flows in the table (dialling, connected or closing). */
  get size(): number {
    return this.flows.size;
  }

  get out() {
    return this.ctx.out;
  }

  holds(flow: TcpFlow): boolean {
    return this.flows.get(flow.key) === flow;
  }

  receive(frame: Buffer, ip: Ipv4Header, off: number, len: number): void {
    const ctx = this.ctx;
    const seg = parseTcp(frame, off, len, ip.src, ip.dst);
    if (typeof seg === "string") return countDrop(ctx.counters, `tcp-${seg}`);
    const key = `${ip.dst}:${seg.dstPort}:${seg.srcPort}`;
    const flow = this.flows.get(key);
    if (flow) {
      if (flow.conn) {
        flow.conn.segmentArrived(seg);
        ctx.tracker.touch(flow.entry);
      } else if (seg.flags & TCP_RST) {
        // The guest gave up while we were still dialling.
        this.remove(flow, "reset-by-guest");
      }
      return;
    }
    const flags = seg.flags;
    if (!(flags & TCP_SYN) || flags & (TCP_ACK | TCP_RST | TCP_FIN)) {
      if (!(flags & TCP_RST)) ctx.out.sendRstFor(ip, seg);
      countDrop(ctx.counters, "tcp-no-connection");
      return;
    }
    if (!ctx.tracker.canOpen("tcp")) {
      countDrop(ctx.counters, "tcp-flow-limit");
      ctx.out.sendRstFor(ip, seg);
      return;
    }
    this.forward(new ConnectionRequest(this, key, ip, seg, frame));
  }

  openFlow(key: string, remoteIp: number, remotePort: number, guestPort: number, direction: "outbound" | "inbound", state: string): TcpFlow {
    const ctx = this.ctx;
    const entry = ctx.tracker.open({
      protocol: "tcp",
      direction,
      guestIp: ipToString(ctx.addresses.guestIp),
      guestPort,
      remoteIp: ipToString(remoteIp),
      remotePort,
      state,
    });
    const flow: TcpFlow = { key, remoteIp, remotePort, guestPort, entry, conn: undefined, app: undefined, cancel: undefined };
    this.flows.set(key, flow);
    ctx.counters.tcpOpened++;
    ctx.flowOpened(entry);
    return flow;
  }

  /** Passive open: SYN-ACK for `syn`, `app` on the other side. */
  accept(flow: TcpFlow, app: TcpApplication, syn: TcpSegment): TcpConnection {
    flow.app = app;
    const conn = TcpConnection.accept(syn, this.config(syn.dstPort, syn.srcPort), this.hooksFor(flow, app), this.ctx.timers);
    flow.conn = conn;
    return conn;
  }

  /** A local port of the gateway for a new connection toward guestPort, or 0 if all are taken. */
  allocateInboundPort(guestPort: number): number {
    const gw = this.ctx.addresses.gatewayIp;
    for (let i = 0; i < 16384; i++) {
      const p = this.nextInboundPort;
      this.nextInboundPort = p >= 65535 ? 49152 : p + 1;
      if (!this.flows.has(`${gw}:${p}:${guestPort}`)) return p;
    }
    return 0;
  }

  /** Active open from the gateway's localPort to guestPort (published ports). */
  connect(localPort: number, guestPort: number, app: TcpApplication): TcpConnection {
    const gw = this.ctx.addresses.gatewayIp;
    const flow = this.openFlow(`${gw}:${localPort}:${guestPort}`, gw, localPort, guestPort, "inbound", "SYN_SENT");
    flow.app = app;
    const conn = TcpConnection.connect(this.config(localPort, guestPort), this.hooksFor(flow, app), this.ctx.timers);
    flow.conn = conn;
    return conn;
  }

  private config(localPort: number, remotePort: number): TcpConnectionConfig {
    const l = this.ctx.limits;
    return {
      localPort,
      remotePort,
      iss: randomInt(0xffffffff),
      mss: this.ctx.mtu - 40,
      receiveBufferBytes: l.tcpReceiveBufferBytes,
      sendHighWaterBytes: l.tcpSendHighWaterBytes,
      timeWaitMs: l.timeWaitMs,
      maxRetries: l.tcpMaxRetries,
    };
  }

  private hooksFor(flow: TcpFlow, app: TcpApplication): TcpConnectionHooks {
    const ctx = this.ctx;
    return {
      emit: (conn: TcpConnection, seg: OutgoingSegment) => this.emit(flow, conn, seg),
      deliver: (data: Buffer) => app.deliver(data),
      deliverEnd: () => app.deliverEnd(),
      appBuffered: () => app.buffered(),
      onSendSpace: () => app.onSendSpace(),
      onEstablished: () => {
        flow.entry.state = "ESTABLISHED";
        app.onEstablished();
      },
      onClosed: (reason: TcpCloseReason) => {
        app.onClosed(reason);
        this.remove(flow, reason);
      },
      requestAck: (conn: TcpConnection) => {
        this.ackQueue.add(conn);
        if (!ctx.inBurst && !this.flushScheduled) {
          this.flushScheduled = setImmediate(() => {
            this.flushScheduled = undefined;
            ctx.guard(() => this.flushAcks());
          });
        }
      },
      onRetransmit: () => {
        ctx.counters.retransmits++;
      },
      onSegmentDropped: (reason: string) => countDrop(ctx.counters, reason),
      canTransmit: () => ctx.out.pendingWriteBytes < TRANSPORT_HIGH_WATER_BYTES,
      sendHighWater: () => this.sendHighWater(flow),
      sendBufferChanged: (delta: number) => this.sendBufferChanged(delta),
      receiveBuffer: () => this.receiveBuffer(),
      receiveGrant: (committed: number) => this.receiveGrant(committed),
      receiveCommitChanged: (delta: number) => {
        this.receiveCommittedBytes += delta;
      },
      onBlocked: (conn: TcpConnection) => {
        this.blockedSenders.add(conn);
      },
    };
  }

  /**
   * Per-connection send buffer: one shared budget split over the open TCP flows, so a single
   * bulk transfer can keep a deep pipe (in-flight data is bounded by this) while 500 flows stay
   * at the configured floor. The floor and the shares taken while few flows were open can add up
   * past the budget (4096 flows × 512 KiB), so the total is capped too: once the connections hold
   * the budget, each is told to stop (what a host socket already read still comes in: one read,
   * ≤ 64 KiB, per flow reading at that moment).
   */
  private sendHighWater(flow: TcpFlow): number {
    const l = this.ctx.limits;
    const flows = Math.max(1, this.ctx.tracker.count("tcp"));
    const share = Math.max(l.tcpSendHighWaterBytes, Math.min(l.tcpSendBufferMaxBytes, Math.floor(l.tcpSendBudgetBytes / flows)));
    const own = flow.conn?.sendBuffered ?? 0;
    const room = l.tcpSendBudgetBytes - this.sendQueuedBytes;
    if (room <= 0) {
      this.sendBudgetHit = true;
      return own;
    }
    return Math.min(share, own + room);
  }

  private sendBufferChanged(delta: number): void {
    this.sendQueuedBytes += delta;
    if (delta >= 0 || !this.sendBudgetHit || this.sendQueuedBytes >= this.ctx.limits.tcpSendBudgetBytes / 2) return;
    // Connections stopped by the budget may hold nothing to be acknowledged, so no ACK would wake them.
    this.sendBudgetHit = false;
    for (const f of this.flows.values()) {
      const c = f.conn;
      if (c && f.app && !c.isClosed && c.sendBuffered < this.sendHighWater(f) / 2) f.app.onSendSpace();
    }
  }

  /** Per-connection receive buffer: the shared budget split over the open TCP flows, within [floor, ceiling]. */
  private receiveBuffer(): number {
    const l = this.ctx.limits;
    const flows = Math.max(1, this.ctx.tracker.count("tcp"));
    return Math.max(this.receiveFloor(), Math.min(l.tcpReceiveBufferBytes, Math.floor(l.tcpReceiveBudgetBytes / flows)));
  }

  private receiveFloor(): number {
    return Math.min(TCP_RECEIVE_FLOOR_BYTES, this.ctx.limits.tcpReceiveBufferBytes);
  }

  /**
   * What a connection holding `committed` may commit in all: its share, but only as far as the budget has room
   * for what it adds. Shares alone were a soft bound: windows are never shrunk, so a flow opened while few were
   * open kept its large share, and flows opened one by one summed to ~5x the budget (4,096 flows: ~330 MiB for 64).
   * Every flow may still hold the floor, so none stalls for good: all flows together commit at most the budget plus
   * one floor each.
   */
  private receiveGrant(committed: number): number {
    const room = Math.max(0, this.ctx.limits.tcpReceiveBudgetBytes - this.receiveCommittedBytes);
    return Math.max(this.receiveFloor(), Math.min(this.receiveBuffer(), committed + room));
  }

  /** The VM link drained: let the blocked connections send again, in order, while it has room. */
  unblockSenders(): void {
    if (this.blockedSenders.size === 0) return;
    const conns = [...this.blockedSenders];
    this.blockedSenders.clear();
    for (const c of conns) {
      c.kick();
      if (this.ctx.out.pendingWriteBytes >= TRANSPORT_HIGH_WATER_BYTES) {
        // Whoever did not get a turn waits for the next drain, in order.
        for (const rest of conns.slice(conns.indexOf(c) + 1)) this.blockedSenders.add(rest);
        break;
      }
    }
  }

  /** One ACK per connection for all the segments of a burst (or none yet, if it may wait for the answer). */
  flushAcks(): void {
    if (this.ackQueue.size === 0) return;
    for (const conn of this.ackQueue) {
      if (conn.flushAckOrDefer()) this.delayedAcks.add(conn);
      else this.delayedAcks.delete(conn);
    }
    this.ackQueue.clear();
    if (this.delayedAcks.size > 0 && !this.delayedAckTimer) {
      this.delayedAckTimer = setTimeout(() => {
        this.delayedAckTimer = undefined;
        this.ctx.guard(() => {
          for (const conn of this.delayedAcks) conn.flushAck();
          this.delayedAcks.clear();
        });
      }, DELAYED_ACK_MS);
    }
  }

  remove(flow: TcpFlow, reason: string): void {
    if (this.flows.get(flow.key) !== flow) return;
    this.flows.delete(flow.key);
    if (flow.conn) {
      this.blockedSenders.delete(flow.conn);
      this.ackQueue.delete(flow.conn);
      this.delayedAcks.delete(flow.conn);
    }
    const cancel = flow.cancel;
    flow.cancel = undefined;
    cancel?.();
    this.sync(flow);
    flow.entry.state = `CLOSED (${reason})`;
    this.ctx.flowClosed(flow.entry);
  }

  private sync(f: TcpFlow): void {
    if (!f.conn) return;
    f.entry.bytesFromGuest = f.conn.bytesFromGuest;
    f.entry.bytesToGuest = f.conn.bytesToGuest;
    if (f.conn.state !== "CLOSED") f.entry.state = f.conn.state;
  }

  /** Brings the tracker entries up to date (bytes, state) before a snapshot. */
  syncAll(): void {
    for (const f of this.flows.values()) this.sync(f);
  }

  /** Evicts flows idle for longer than the limit. */
  sweep(now: number): void {
    for (const flow of [...this.flows.values()]) {
      if (now - flow.entry.lastActivityAt <= this.ctx.limits.tcpIdleTimeoutMs) continue;
      this.ctx.log(`tcp: evicting idle flow to ${flow.entry.remoteIp}:${flow.entry.remotePort}`);
      if (flow.conn) flow.conn.abort("timeout");
      else this.remove(flow, "idle");
    }
  }

  /** Stack shutdown: releases every connection without telling the guest. */
  close(): void {
    if (this.flushScheduled) clearImmediate(this.flushScheduled);
    this.flushScheduled = undefined;
    if (this.delayedAckTimer) clearTimeout(this.delayedAckTimer);
    this.delayedAckTimer = undefined;
    this.delayedAcks.clear();
    this.blockedSenders.clear();
    for (const f of [...this.flows.values()]) {
      const cancel = f.cancel;
      f.cancel = undefined;
      cancel?.();
      f.conn?.destroy();
      f.app?.destroy();
    }
    this.flows.clear();
  }

  private emit(flow: TcpFlow, conn: TcpConnection, seg: OutgoingSegment): void {
    const out = this.ctx.out;
    const a = this.ctx.addresses;
    const optLen = tcpOptionsLength(seg.options);
    const tcpLen = 20 + optLen + seg.dataLength;
    const frame = out.reserve(ETHERNET_HEADER_LENGTH + IPV4_HEADER_LENGTH + tcpLen);
    writeEthernet(frame, out.guestMac, a.gatewayMac, ETHERTYPE_IPV4);
    writeIpv4(frame, ETHERNET_HEADER_LENGTH, {
      totalLength: IPV4_HEADER_LENGTH + tcpLen,
      identification: out.nextIpId(),
      protocol: IP_PROTO_TCP,
      src: flow.remoteIp,
      dst: a.guestIp,
      dontFragment: true,
    });
    const o = ETHERNET_HEADER_LENGTH + IPV4_HEADER_LENGTH;
    writeTcpHeader(frame, o, {
      srcPort: flow.remotePort,
      dstPort: flow.guestPort,
      seq: seg.seq,
      ack: seg.ack,
      flags: seg.flags,
      window: seg.window,
      ...(seg.options ? { options: seg.options } : {}),
    });
    if (seg.dataLength > 0) conn.copySendData(seg.dataOffset, seg.dataLength, frame, o + 20 + optLen);
    finishTcpChecksum(frame, o, tcpLen, flow.remoteIp, a.guestIp);
    out.commit(frame);
  }
}
