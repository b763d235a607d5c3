import dgram from "node:dgram";
import { EventEmitter } from "node:events";
import net from "node:net";
import { randomInt } from "node:crypto";
import { type FlowEntry, type FlowSnapshot, ConnectionTracker } from "../conntrack/connection-tracker.js";
import { type DnsOptions, DnsInterceptor } from "../dns/dns-interceptor.js";
import { DnsTcpSession } from "../dns/dns-tcp-session.js";
import { NetworkError, PolicyDeniedError } from "../errors.js";
import { type EgressPolicyOptions, EgressPolicy, type Protocol } from "../policy/egress-policy.js";
import { HostSocketBridge, type TcpApplication } from "../proxy/host-bridge.js";
import {
  type OutgoingSegment,
  type TcpCloseReason,
  TcpConnection,
  type TcpConnectionConfig,
  type TcpConnectionHooks,
  type TimerHost,
} from "../tcp/tcp-connection.js";
import { FrameServer } from "../transport/frame-server.js";
import { ARP_REPLY, ARP_REQUEST, buildArpFrame, parseArp } from "../wire/arp.js";
import {
  DHCP_ACK,
  DHCP_DISCOVER,
  DHCP_INFORM,
  DHCP_NAK,
  DHCP_OFFER,
  DHCP_REQUEST,
  buildDhcpReply,
  parseDhcp,
} from "../wire/dhcp.js";
import {
  BROADCAST_MAC,
  ETHERNET_HEADER_LENGTH,
  ETHERTYPE_ARP,
  ETHERTYPE_IPV4,
  ETHERTYPE_IPV6,
  macEquals,
  parseEthernet,
  writeEthernet,
} from "../wire/ethernet.js";
import {
  ICMP_DEST_UNREACHABLE,
  ICMP_ECHO_REPLY,
  ICMP_ECHO_REQUEST,
  ICMP_TIME_EXCEEDED,
  ICMP_UNREACH_ADMIN_PROHIBITED,
  ICMP_UNREACH_HOST,
  ICMP_UNREACH_NET,
  ICMP_UNREACH_PORT,
  finishIcmp,
  parseIcmp,
} from "../wire/icmp.js";
import { ipToString } from "../wire/ip-address.js";
import { IP_PROTO_ICMP, IP_PROTO_TCP, IP_PROTO_UDP, IPV4_HEADER_LENGTH, type Ipv4Header, parseIpv4, writeIpv4 } from "../wire/ipv4.js";
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
import { UDP_HEADER_LENGTH, parseUdp, writeUdp } from "../wire/udp.js";
import {
  IP6_NEXT_ICMPV6,
  IP6_NEXT_TCP,
  IP6_NEXT_UDP,
  IPV6_HEADER_LENGTH,
  type Ipv6Header,
  buildAdminProhibitedV6,
  buildNeighborAdvertisement,
  buildTcpRstV6,
  ipv6ToString,
  parseIpv6,
} from "../wire/ipv6.js";
import { type SlotAddresses, slotAddresses } from "./addressing.js";
import { type StackCounters, countDrop, newCounters } from "./counters.js";
import { Ipv4Reassembler } from "./ipv4-reassembly.js";
import { PcapWriter } from "./pcap-writer.js";

export interface PublishedPort {
  /** Port on the host (bound on `hostAddress`, default 127.0.0.1). */
  hostPort: number;
  /** Port in the guest the stack connects to. */
  guestPort: number;
  hostAddress?: string;
}

export interface NetworkLimits {
  maxTcpFlows: number;
  maxUdpFlows: number;
  udpIdleTimeoutMs: number;
  tcpIdleTimeoutMs: number;
  connectTimeoutMs: number;
  timeWaitMs: number;
  tcpReceiveBufferBytes: number;
  /** Floor of the per-connection send buffer (host bytes read ahead of the guest's ACKs). */
  tcpSendHighWaterBytes: number;
  /** Ceiling of the per-connection send buffer. */
  tcpSendBufferMaxBytes: number;
  /** Send-buffer budget shared by all TCP flows of the VM. */
  tcpSendBudgetBytes: number;
  tcpMaxRetries: number;
}

export interface NetworkStackOptions {
  /** 0..65535: selects the /30 in 100.96.0.0/11 and the MACs (DESIGN §6). */
  slot: number;
  policy?: EgressPolicyOptions;
  dns?: DnsOptions;
  ports?: PublishedPort[];
  /** Guest MTU (default 1500; 576..65520). */
  mtu?: number;
  limits?: Partial<NetworkLimits>;
  /** Write every frame (both directions) to this pcap file. */
  pcapPath?: string;
  /** Log sink; default writes to stderr. */
  log?: (line: string) => void;
}

export interface DenialEvent {
  protocol: Protocol;
  guestPort: number;
  dstIp: string;
  dstPort: number;
  rule: string;
  error: PolicyDeniedError;
}

export interface NetworkStackEvents {
  "flow-open": [FlowSnapshot];
  "flow-close": [FlowSnapshot];
  denied: [DenialEvent];
  log: [string];
}

/**
 * TCP stops producing new segments while this much is queued toward the VM, so a fast host
 * cannot bury the VM link (the transport only drops beyond 32 MiB, for non-TCP floods).
 */
const TRANSPORT_HIGH_WATER_BYTES = 2 * 1024 * 1024;

/** A frame buffer with room for the transport's 4-byte length prefix, already filled in. */
function allocPrefixedFrame(frameLength: number): Buffer {
  const b = Buffer.allocUnsafe(4 + frameLength);
  b.writeUInt32BE(frameLength, 0);
  return b;
}

export const DEFAULT_LIMITS: NetworkLimits = {
  maxTcpFlows: 4096,
  maxUdpFlows: 1024,
  udpIdleTimeoutMs: 60_000,
  tcpIdleTimeoutMs: 2 * 60 * 60_000,
  connectTimeoutMs: 10_000,
  timeWaitMs: 2_000,
  tcpReceiveBufferBytes: 1024 * 1024,
  tcpSendHighWaterBytes: 512 * 1024,
  tcpSendBufferMaxBytes: 4 * 1024 * 1024,
  tcpSendBudgetBytes: 64 * 1024 * 1024,
  tcpMaxRetries: 10,
};

interface TcpFlow {
  key: string;
  remoteIp: number;
  remotePort: number;
  guestPort: number;
  entry: FlowEntry;
  conn: TcpConnection | undefined;
  app: TcpApplication | undefined;
  dialSocket: net.Socket | undefined;
  dialTimer: NodeJS.Timeout | undefined;
}

interface UdpFlow {
  key: string;
  remoteIp: number;
  remotePort: number;
  guestPort: number;
  socket: dgram.Socket;
  entry: FlowEntry;
  dialHost: string;
  dialPort: number;
}

/**
 * Node runs expired timers before polling for I/O, so after a long burst a retransmission timer
 * would fire while the ACKs that cancel it still sit unread in the socket. Hopping through
 * setImmediate (check phase, after the poll phase) lets pending frames be processed first.
 */
function timersWithGuard(guard: (fn: () => void) => void): TimerHost {
  return {
    now: () => performance.now(),
    set: (fn, ms) => setTimeout(() => setImmediate(() => guard(fn)), ms),
    clear: (h) => clearTimeout(h as NodeJS.Timeout),
  };
}

/**
 * Userspace Ethernet/IPv4 stack for one VM: answers ARP, ICMP echo and DHCP for the gateway,
 * terminates the guest's TCP and relays it to host sockets (connect-then-accept), relays UDP,
 * intercepts DNS, enforces the egress policy and tracks every flow.
 */
export class NetworkStack extends EventEmitter<NetworkStackEvents> {
  readonly addresses: SlotAddresses;
  readonly mtu: number;
  readonly counters: StackCounters = newCounters();
  readonly tracker: ConnectionTracker;
  readonly policy: EgressPolicy;
  readonly dns: DnsInterceptor;
  private readonly limits: NetworkLimits;
  private readonly transport: FrameServer;
  private readonly publishedPorts: PublishedPort[];
  private readonly publishedServers: net.Server[] = [];
  private readonly inboundSockets = new Set<net.Socket>();
  private readonly tcpFlows = new Map<string, TcpFlow>();
  private readonly udpFlows = new Map<string, UdpFlow>();
  private readonly ackQueue = new Set<TcpConnection>();
  private readonly reassembler = new Ipv4Reassembler();
  private readonly corkedSockets: net.Socket[] = [];
  /** Connections waiting for room in the transport's write buffer. */
  private readonly blockedSenders = new Set<TcpConnection>();
  private guestMac: Uint8Array;
  private ipId = randomInt(0xffff);
  private nextInboundPort = 49152 + randomInt(16000);
  private inBurst = false;
  private flushScheduled: NodeJS.Immediate | undefined;
  private sweepTimer: NodeJS.Timeout | undefined;
  private pcap: PcapWriter | undefined;
  private readonly logSink: (line: string) => void;
  private listening = false;
  private closed = false;
  /** Runs callbacks from sockets and timers so that a bug is counted and logged, never fatal. */
  private readonly guard = (fn: () => void): void => {
    try {
      fn();
    } catch (err) {
      countDrop(this.counters, "internal-error");
      this.log(`internal error: ${(err as Error).stack ?? String(err)}`);
    }
  };
  private readonly timers: TimerHost = timersWithGuard(this.guard);

  constructor(options: NetworkStackOptions) {
    super();
    this.addresses = slotAddresses(options.slot);
    const mtu = options.mtu ?? 1500;
    if (!Number.isInteger(mtu) || mtu < 576 || mtu > 65520) {
      throw new NetworkError("InvalidConfig", `mtu ${mtu} is outside 576..65520`);
    }
    this.mtu = mtu;
    this.limits = { ...DEFAULT_LIMITS, ...options.limits };
    this.publishedPorts = options.ports ?? [];
    this.guestMac = this.addresses.guestMac;
    const slot = options.slot;
    this.logSink = options.log ?? ((line) => process.stderr.write(`[iii-network slot ${slot}] ${line}\n`));
    this.policy = new EgressPolicy(options.policy);
    this.tracker = new ConnectionTracker({ maxTcpFlows: this.limits.maxTcpFlows, maxUdpFlows: this.limits.maxUdpFlows });
    // The guest reaches host services as host.iii.internal:P (DESIGN §6), i.e. the gateway.
    const localNames = { "host.iii.internal": ipToString(this.addresses.gatewayIp), ...options.dns?.localNames };
    this.dns = new DnsInterceptor({ ...options.dns, localNames }, this.policy, (l) => this.log(l));
    if (options.pcapPath) this.pcap = new PcapWriter(options.pcapPath);
    this.transport = new FrameServer(65535 + ETHERNET_HEADER_LENGTH, {
      onFrame: (f) => this.receiveFrame(f),
      onBurstEnd: () => this.endBurst(),
      log: (l) => this.log(l),
      onConnect: () => this.log("transport: VM connected"),
      onDrain: () => this.guard(() => this.unblockSenders()),
      onDisconnect: () => this.log("transport: VM disconnected"),
    });
  }

  /** Starts the frame transport on `socketPath` and the published-port listeners. */
  async listen(socketPath: string): Promise<void> {
    if (this.closed) throw new NetworkError("StackClosed", "the stack is closed");
    if (this.listening) throw new NetworkError("AlreadyListening", "listen() was already called");
    this.listening = true;
    await this.transport.listen(socketPath);
    for (const p of this.publishedPorts) {
      const server = net.createServer({ allowHalfOpen: true, pauseOnConnect: true, noDelay: true }, (sock) =>
        this.guard(() => this.openInbound(sock, p.guestPort)),
      );
      this.publishedServers.push(server);
      await new Promise<void>((resolve, reject) => {
        server.once("error", (err) =>
          reject(new NetworkError("InvalidConfig", `cannot publish ${p.hostAddress ?? "127.0.0.1"}:${p.hostPort}`, { cause: err })),
        );
        server.listen(p.hostPort, p.hostAddress ?? "127.0.0.1", () => resolve());
      });
    }
    this.sweepTimer = setInterval(() => this.guard(() => this.sweep()), 1000);
  }

  /** Flow table snapshot (5-tuple, state, bytes each way, age, idle time). */
  snapshot(): FlowSnapshot[] {
    for (const f of this.tcpFlows.values()) this.syncTcpEntry(f);
    return this.tracker.snapshot();
  }

  /** Releases every socket, timer and file. */
  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    if (this.sweepTimer) clearInterval(this.sweepTimer);
    if (this.flushScheduled) clearImmediate(this.flushScheduled);
    this.flushScheduled = undefined;
    this.blockedSenders.clear();
    for (const f of [...this.tcpFlows.values()]) {
      if (f.dialTimer) clearTimeout(f.dialTimer);
      f.dialSocket?.destroy();
      f.conn?.destroy();
      f.app?.destroy();
    }
    this.tcpFlows.clear();
    for (const f of this.udpFlows.values()) f.socket.close();
    this.udpFlows.clear();
    for (const s of this.inboundSockets) s.destroy();
    this.inboundSockets.clear();
    await Promise.all(this.publishedServers.map((s) => new Promise<void>((r) => s.close(() => r()))));
    this.publishedServers.length = 0;
    this.dns.close();
    await this.transport.close();
    if (this.pcap) await this.pcap.close();
    this.pcap = undefined;
  }

  /** Feeds one Ethernet frame as if it came from the VM (used by the transport; also by tests and fuzzing). */
  injectFrame(frame: Buffer): void {
    this.receiveFrame(frame);
    this.endBurst();
  }

  // ------------------------------------------------------------------ frame input

  private receiveFrame(frame: Buffer): void {
    if (this.closed) return;
    const c = this.counters;
    c.framesIn++;
    c.bytesIn += frame.length;
    this.pcap?.write(frame);
    this.inBurst = true;
    try {
      const eth = parseEthernet(frame);
      if (!eth) return countDrop(c, "ethernet-truncated");
      if (frame.length > this.mtu + ETHERNET_HEADER_LENGTH) return countDrop(c, "oversize");
      if (!macEquals(eth.dst, this.addresses.gatewayMac) && !macEquals(eth.dst, BROADCAST_MAC)) {
        // IPv6 multicast (33:33:…) carries neighbour solicitations, answered to refuse IPv6 promptly.
        if (!(eth.etherType === ETHERTYPE_IPV6 && eth.dst[0] === 0x33 && eth.dst[1] === 0x33)) return countDrop(c, "not-for-gateway");
      }
      switch (eth.etherType) {
        case ETHERTYPE_ARP:
          return this.receiveArp(frame);
        case ETHERTYPE_IPV4:
          return this.receiveIpv4(frame);
        case ETHERTYPE_IPV6:
          return this.receiveIpv6(frame, eth.src);
        default:
          return countDrop(c, "ethertype");
      }
    } catch (err) {
      // A bug must never take the VM's network down; count it and keep going.
      countDrop(c, "internal-error");
      this.log(`internal error while handling a frame: ${(err as Error).stack ?? String(err)}`);
    }
  }

  /**
   * Per-connection send buffer: one shared budget split over the open TCP flows, so a single
   * bulk transfer can keep a deep pipe (in-flight data is bounded by this) while 500 flows stay
   * at the configured floor.
   */
  private sendHighWater(): number {
    const l = this.limits;
    const flows = Math.max(1, this.tracker.count("tcp"));
    return Math.max(l.tcpSendHighWaterBytes, Math.min(l.tcpSendBufferMaxBytes, Math.floor(l.tcpSendBudgetBytes / flows)));
  }

  private unblockSenders(): void {
    if (this.blockedSenders.size === 0) return;
    const conns = [...this.blockedSenders];
    this.blockedSenders.clear();
    for (const c of conns) {
      c.kick();
      if (this.transport.pendingWriteBytes >= TRANSPORT_HIGH_WATER_BYTES) {
        // Whoever did not get a turn waits for the next drain, in order.
        for (const rest of conns.slice(conns.indexOf(c) + 1)) this.blockedSenders.add(rest);
        break;
      }
    }
  }

  private endBurst(): void {
    this.inBurst = false;
    this.guard(() => this.flushAcks());
    if (this.corkedSockets.length > 0) {
      for (const sock of this.corkedSockets) sock.uncork();
      this.corkedSockets.length = 0;
    }
  }

  /** Coalesces writes to host sockets made while one burst of frames is processed. */
  private corkDuringBurst = (sock: net.Socket): void => {
    if (!this.inBurst) return;
    sock.cork();
    this.corkedSockets.push(sock);
  };

  private flushAcks(): void {
    if (this.ackQueue.size === 0) return;
    for (const conn of this.ackQueue) conn.flushAck();
    this.ackQueue.clear();
  }

  private receiveArp(frame: Buffer): void {
    const arp = parseArp(frame.subarray(ETHERNET_HEADER_LENGTH));
    if (!arp) return countDrop(this.counters, "arp-malformed");
    const a = this.addresses;
    if (arp.senderIp === a.guestIp) this.guestMac = Uint8Array.from(arp.senderMac);
    if (arp.operation === ARP_REQUEST && arp.targetIp === a.gatewayIp) {
      this.sendFrame(buildArpFrame(arp.senderMac, a.gatewayMac, ARP_REPLY, a.gatewayMac, a.gatewayIp, arp.senderMac, arp.senderIp));
    } else if (arp.operation !== ARP_REPLY) {
      countDrop(this.counters, "arp-not-for-gateway");
    }
  }

  private receiveIpv4(frame: Buffer): void {
    const ip = parseIpv4(frame, ETHERNET_HEADER_LENGTH);
    if (typeof ip === "string") return countDrop(this.counters, `ipv4-${ip}`);
    if (ip.moreFragments || ip.fragmentOffset !== 0) return this.receiveFragment(frame, ip);
    const a = this.addresses;
    const l4 = ETHERNET_HEADER_LENGTH + ip.headerLength;
    const l4len = ip.totalLength - ip.headerLength;
    if (ip.src !== a.guestIp) {
      if (ip.src === 0 && ip.protocol === IP_PROTO_UDP) return this.receiveUdp(frame, ip, l4, l4len);
      return countDrop(this.counters, "ipv4-source-not-guest");
    }
    if (ip.ttl <= 1 && ip.dst !== a.gatewayIp) {
      this.sendIcmpError(frame, ip, ICMP_TIME_EXCEEDED, 0);
      return countDrop(this.counters, "ipv4-ttl-expired");
    }
    switch (ip.protocol) {
      case IP_PROTO_TCP:
        return this.receiveTcp(frame, ip, l4, l4len);
      case IP_PROTO_UDP:
        return this.receiveUdp(frame, ip, l4, l4len);
      case IP_PROTO_ICMP:
        return this.receiveIcmp(frame, ip, l4, l4len);
      default:
        return countDrop(this.counters, "ipv4-protocol");
    }
  }

  /**
   * The stack relays IPv4 only. So that a guest trying IPv6 fails at once rather than hanging:
   * neighbour solicitations are answered with the gateway MAC, TCP gets RST, UDP gets ICMPv6
   * administratively prohibited; everything else is dropped.
   */
  private receiveIpv6(frame: Buffer, srcMac: Uint8Array): void {
    const c = this.counters;
    const ip = parseIpv6(frame, ETHERNET_HEADER_LENGTH);
    if (!ip) return countDrop(c, "ipv6-malformed");
    const start = ETHERNET_HEADER_LENGTH + IPV6_HEADER_LENGTH;
    const payload = frame.subarray(start, start + ip.payloadLength);
    const gw = this.addresses.gatewayMac;
    if (ip.nextHeader === IP6_NEXT_ICMPV6) {
      const na = buildNeighborAdvertisement(ip, payload, srcMac, gw);
      if (!na) return countDrop(c, "ipv6");
      return this.sendFrame(na);
    }
    if (ip.dst[0] === 0xff) return countDrop(c, "ipv6");
    if (ip.nextHeader === IP6_NEXT_TCP) {
      const rst = buildTcpRstV6(ip, payload, srcMac, gw);
      if (!rst) return countDrop(c, "ipv6");
      if (payload[13]! & TCP_SYN) this.denyIpv6("tcp", ip, payload);
      this.sendFrame(rst);
      return countDrop(c, "ipv6-refused");
    }
    if (ip.nextHeader === IP6_NEXT_UDP && payload.length >= 8) {
      this.denyIpv6("udp", ip, payload);
      this.sendFrame(buildAdminProhibitedV6(frame.subarray(ETHERNET_HEADER_LENGTH, start + ip.payloadLength), ip, srcMac, gw));
      return countDrop(c, "ipv6-refused");
    }
    return countDrop(c, "ipv6");
  }

  private denyIpv6(protocol: Protocol, ip: Ipv6Header, l4: Uint8Array): void {
    this.counters.denied++;
    const port = (i: number) => (l4[i]! << 8) | l4[i + 1]!;
    this.log(`policy: denied ${protocol} [${ipv6ToString(ip.src)}]:${port(0)} -> [${ipv6ToString(ip.dst)}]:${port(2)} by builtin:ipv6-not-relayed`);
  }

  /** Guest datagrams bigger than its MTU (UDP mostly) arrive fragmented; rebuild and re-dispatch them. */
  private receiveFragment(frame: Buffer, ip: Ipv4Header): void {
    if (ip.src !== this.addresses.guestIp) return countDrop(this.counters, "ipv4-source-not-guest");
    const start = ETHERNET_HEADER_LENGTH + ip.headerLength;
    const r = this.reassembler.add(ip.src, ip.dst, ip.protocol, ip.identification, ip.fragmentOffset, ip.moreFragments, frame.subarray(start, ETHERNET_HEADER_LENGTH + ip.totalLength));
    if (r === "pending") return;
    if (r === "dropped") return countDrop(this.counters, "ipv4-fragment-dropped");
    // Rebuild a whole frame (Ethernet + 20-byte header + payload) and handle it like any other.
    const whole = Buffer.allocUnsafe(ETHERNET_HEADER_LENGTH + IPV4_HEADER_LENGTH + r.length);
    frame.copy(whole, 0, 0, ETHERNET_HEADER_LENGTH);
    writeIpv4(whole, ETHERNET_HEADER_LENGTH, {
      totalLength: IPV4_HEADER_LENGTH + r.length,
      identification: ip.identification,
      protocol: ip.protocol,
      src: ip.src,
      dst: ip.dst,
      ttl: ip.ttl,
    });
    r.copy(whole, ETHERNET_HEADER_LENGTH + IPV4_HEADER_LENGTH);
    const reparsed = parseIpv4(whole, ETHERNET_HEADER_LENGTH);
    if (typeof reparsed === "string") return countDrop(this.counters, "ipv4-fragment-dropped");
    const l4 = ETHERNET_HEADER_LENGTH + IPV4_HEADER_LENGTH;
    if (reparsed.protocol === IP_PROTO_UDP) this.receiveUdp(whole, reparsed, l4, r.length);
    else if (reparsed.protocol === IP_PROTO_TCP) this.receiveTcp(whole, reparsed, l4, r.length);
    else if (reparsed.protocol === IP_PROTO_ICMP) this.receiveIcmp(whole, reparsed, l4, r.length);
    else countDrop(this.counters, "ipv4-protocol");
  }

  private receiveIcmp(frame: Buffer, ip: Ipv4Header, off: number, len: number): void {
    const icmp = parseIcmp(frame, off, len);
    if (!icmp) return countDrop(this.counters, "icmp-malformed");
    if (icmp.type !== ICMP_ECHO_REQUEST) return countDrop(this.counters, "icmp-type");
    if (ip.dst !== this.addresses.gatewayIp) return countDrop(this.counters, "icmp-echo-not-gateway");
    this.sendIpv4(ip.dst, ip.src, IP_PROTO_ICMP, len, (buf, o) => {
      frame.copy(buf, o, off, off + len);
      finishIcmp(buf, o, len, ICMP_ECHO_REPLY, 0);
    });
  }

  // ------------------------------------------------------------------ UDP

  private receiveUdp(frame: Buffer, ip: Ipv4Header, off: number, len: number): void {
    const udp = parseUdp(frame, off, len, ip.src, ip.dst);
    if (typeof udp === "string") return countDrop(this.counters, `udp-${udp}`);
    const payload = frame.subarray(off + UDP_HEADER_LENGTH, off + udp.length);
    if (udp.dstPort === 67 && udp.srcPort === 68) return this.receiveDhcp(payload);
    if (ip.src !== this.addresses.guestIp) return countDrop(this.counters, "ipv4-source-not-guest");
    if (udp.dstPort === 53) return this.receiveDnsUdp(ip, udp.srcPort, Buffer.from(payload));
    this.relayUdp(frame, ip, udp.srcPort, udp.dstPort, payload);
  }

  private receiveDnsUdp(ip: Ipv4Header, srcPort: number, query: Buffer): void {
    this.counters.dnsQueries++;
    const replyFrom = ip.dst;
    void this.dns.answer(query, 4096).then(
      (resp) =>
        this.guard(() => {
          if (!resp) return countDrop(this.counters, "dns-too-short");
          if (!this.closed) this.sendUdp(replyFrom, 53, srcPort, resp);
        }),
      (err: unknown) => this.guard(() => {
        throw err;
      }),
    );
  }

  private receiveDhcp(payload: Uint8Array): void {
    const msg = parseDhcp(payload);
    if (!msg || msg.op !== 1) return countDrop(this.counters, "dhcp-malformed");
    const a = this.addresses;
    let type: number;
    if (msg.messageType === DHCP_DISCOVER) type = DHCP_OFFER;
    else if (msg.messageType === DHCP_REQUEST) {
      const wanted = msg.requestedIp ?? msg.ciaddr;
      const forUs = msg.serverId === undefined || msg.serverId === a.gatewayIp;
      if (!forUs) return;
      type = wanted === a.guestIp || wanted === 0 ? DHCP_ACK : DHCP_NAK;
    } else if (msg.messageType === DHCP_INFORM) type = DHCP_ACK;
    else return countDrop(this.counters, "dhcp-type");
    const reply = buildDhcpReply({
      messageType: type,
      xid: msg.xid,
      flags: msg.flags,
      chaddr: msg.chaddr,
      yiaddr: a.guestIp,
      serverIp: a.gatewayIp,
      subnetMask: a.netmask,
      router: a.gatewayIp,
      dnsServers: [a.gatewayIp],
      leaseSeconds: 86400,
      mtu: this.mtu,
    });
    // Broadcast: the client has no address yet (RFC 2131 §4.1).
    this.sendUdpRaw(a.gatewayIp, 0xffffffff, 67, 68, reply, BROADCAST_MAC);
  }

  private relayUdp(frame: Buffer, ip: Ipv4Header, srcPort: number, dstPort: number, payload: Uint8Array): void {
    const key = `${ip.dst}:${dstPort}:${srcPort}`;
    let flow = this.udpFlows.get(key);
    if (!flow) {
      const d = this.policy.decide("udp", ip.dst, dstPort, this.addresses.gatewayIp);
      if (!d.allowed) {
        this.deny("udp", srcPort, ip.dst, dstPort, d.rule);
        this.sendIcmpError(frame, ip, ICMP_DEST_UNREACHABLE, ICMP_UNREACH_ADMIN_PROHIBITED);
        return;
      }
      if (!this.tracker.canOpen("udp")) {
        countDrop(this.counters, "udp-flow-limit");
        this.sendIcmpError(frame, ip, ICMP_DEST_UNREACHABLE, ICMP_UNREACH_PORT);
        return;
      }
      const socket = dgram.createSocket("udp4");
      const entry = this.tracker.open({
        protocol: "udp",
        direction: "outbound",
        guestIp: ipToString(this.addresses.guestIp),
        guestPort: srcPort,
        remoteIp: ipToString(ip.dst),
        remotePort: dstPort,
        state: "OPEN",
      });
      const f: UdpFlow = { key, remoteIp: ip.dst, remotePort: dstPort, guestPort: srcPort, socket, entry, dialHost: d.dialHost, dialPort: d.dialPort };
      flow = f;
      this.udpFlows.set(key, f);
      this.counters.udpOpened++;
      socket.on("message", (msg, rinfo) =>
        this.guard(() => {
          if (rinfo.port !== f.dialPort || rinfo.address !== f.dialHost) return;
          f.entry.bytesToGuest += msg.length;
          this.tracker.touch(f.entry);
          this.sendUdp(f.remoteIp, f.remotePort, f.guestPort, msg);
        }),
      );
      socket.on("error", () => {
        // Connection-refused style errors on unconnected UDP sockets are not reported per peer; ignore.
      });
      this.emit("flow-open", this.snapshotOf(entry));
    }
    flow.entry.bytesFromGuest += payload.length;
    this.tracker.touch(flow.entry);
    flow.socket.send(Buffer.from(payload), flow.dialPort, flow.dialHost);
  }

  private closeUdpFlow(f: UdpFlow): void {
    this.udpFlows.delete(f.key);
    f.socket.close();
    const snap = this.snapshotOf(f.entry);
    this.tracker.close(f.entry);
    this.emit("flow-close", snap);
  }

  /** UDP to the guest; fragments replies bigger than the MTU (RFC 791) rather than sending them malformed. */
  private sendUdp(srcIp: number, srcPort: number, dstPort: number, payload: Uint8Array): void {
    this.sendUdpRaw(srcIp, this.addresses.guestIp, srcPort, dstPort, payload, this.guestMac);
  }

  private sendUdpRaw(srcIp: number, dstIp: number, srcPort: number, dstPort: number, payload: Uint8Array, dstMac: Uint8Array): void {
    const udpLen = UDP_HEADER_LENGTH + payload.length;
    if (udpLen > 65535 - IPV4_HEADER_LENGTH) return countDrop(this.counters, "udp-reply-too-big");
    if (IPV4_HEADER_LENGTH + udpLen <= this.mtu) {
      this.sendIpv4(srcIp, dstIp, IP_PROTO_UDP, udpLen, (buf, o) => {
        buf.set(payload, o + UDP_HEADER_LENGTH);
        writeUdp(buf, o, srcPort, dstPort, udpLen, srcIp, dstIp);
      }, dstMac);
      return;
    }
    const datagram = Buffer.allocUnsafe(udpLen);
    datagram.set(payload, UDP_HEADER_LENGTH);
    writeUdp(datagram, 0, srcPort, dstPort, udpLen, srcIp, dstIp);
    const chunk = Math.floor((this.mtu - IPV4_HEADER_LENGTH) / 8) * 8;
    const id = this.nextIpId();
    for (let off = 0; off < udpLen; off += chunk) {
      const n = Math.min(chunk, udpLen - off);
      const frame = Buffer.allocUnsafe(ETHERNET_HEADER_LENGTH + IPV4_HEADER_LENGTH + n);
      writeEthernet(frame, dstMac, this.addresses.gatewayMac, ETHERTYPE_IPV4);
      writeIpv4(frame, ETHERNET_HEADER_LENGTH, {
        totalLength: IPV4_HEADER_LENGTH + n,
        identification: id,
        protocol: IP_PROTO_UDP,
        src: srcIp,
        dst: dstIp,
        moreFragments: off + n < udpLen,
        fragmentOffset: off,
      });
      datagram.copy(frame, ETHERNET_HEADER_LENGTH + IPV4_HEADER_LENGTH, off, off + n);
      this.sendFrame(frame);
    }
  }

  // ------------------------------------------------------------------ TCP

  private receiveTcp(frame: Buffer, ip: Ipv4Header, off: number, len: number): void {
    const seg = parseTcp(frame, off, len, ip.src, ip.dst);
    if (typeof seg === "string") return countDrop(this.counters, `tcp-${seg}`);
    const key = `${ip.dst}:${seg.dstPort}:${seg.srcPort}`;
    const flow = this.tcpFlows.get(key);
    if (flow) {
      if (flow.conn) {
        flow.conn.segmentArrived(seg);
        this.tracker.touch(flow.entry);
      } else if (seg.flags & TCP_RST) {
        // The guest gave up while we were still dialling.
        this.removeTcpFlow(flow, "reset-by-guest");
      }
      return;
    }
    const flags = seg.flags;
    if (!(flags & TCP_SYN) || flags & (TCP_ACK | TCP_RST | TCP_FIN)) {
      if (!(flags & TCP_RST)) this.sendRstFor(ip, seg);
      countDrop(this.counters, "tcp-no-connection");
      return;
    }
    if (!this.tracker.canOpen("tcp")) {
      countDrop(this.counters, "tcp-flow-limit");
      this.sendRstFor(ip, seg);
      return;
    }
    if (seg.dstPort === 53) return this.openDnsTcp(key, ip, seg);
    const d = this.policy.decide("tcp", ip.dst, seg.dstPort, this.addresses.gatewayIp);
    if (!d.allowed) {
      this.deny("tcp", seg.srcPort, ip.dst, seg.dstPort, d.rule);
      this.sendRstFor(ip, seg);
      return;
    }
    this.dialOutbound(key, frame, ip, seg, d.dialHost, d.dialPort);
  }

  private newTcpFlow(key: string, remoteIp: number, remotePort: number, guestPort: number, direction: "outbound" | "inbound"): TcpFlow {
    const entry = this.tracker.open({
      protocol: "tcp",
      direction,
      guestIp: ipToString(this.addresses.guestIp),
      guestPort,
      remoteIp: ipToString(remoteIp),
      remotePort,
      state: direction === "outbound" ? "CONNECTING" : "SYN_SENT",
    });
    const flow: TcpFlow = { key, remoteIp, remotePort, guestPort, entry, conn: undefined, app: undefined, dialSocket: undefined, dialTimer: undefined };
    this.tcpFlows.set(key, flow);
    this.counters.tcpOpened++;
    this.emit("flow-open", this.snapshotOf(entry));
    return flow;
  }

  private tcpConfig(localPort: number, remotePort: number): TcpConnectionConfig {
    const l = this.limits;
    return {
      localPort,
      remotePort,
      iss: randomInt(0xffffffff),
      mss: this.mtu - 40,
      receiveBufferBytes: l.tcpReceiveBufferBytes,
      sendHighWaterBytes: l.tcpSendHighWaterBytes,
      timeWaitMs: l.timeWaitMs,
      maxRetries: l.tcpMaxRetries,
    };
  }

  private hooksFor(flow: TcpFlow, app: TcpApplication): TcpConnectionHooks {
    return {
      emit: (conn: TcpConnection, seg: OutgoingSegment) => this.emitTcp(flow, conn, seg),
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
        this.removeTcpFlow(flow, reason);
      },
      requestAck: (conn: TcpConnection) => {
        this.ackQueue.add(conn);
        if (!this.inBurst && !this.flushScheduled) {
          this.flushScheduled = setImmediate(() => {
            this.flushScheduled = undefined;
            this.guard(() => this.flushAcks());
          });
        }
      },
      onRetransmit: () => {
        this.counters.retransmits++;
      },
      onSegmentDropped: (reason: string) => countDrop(this.counters, reason),
      canTransmit: () => this.transport.pendingWriteBytes < TRANSPORT_HIGH_WATER_BYTES,
      sendHighWater: () => this.sendHighWater(),
      onBlocked: (conn: TcpConnection) => {
        this.blockedSenders.add(conn);
      },
    };
  }

  /** Connect-then-accept: the guest gets SYN-ACK only once the host connection exists. */
  private dialOutbound(key: string, frame: Buffer, ip: Ipv4Header, seg: TcpSegment, host: string, port: number): void {
    const flow = this.newTcpFlow(key, ip.dst, seg.dstPort, seg.srcPort, "outbound");
    const syn: TcpSegment = { ...seg, options: { ...seg.options }, payload: new Uint8Array(0) };
    // Keep the IP header + 8 bytes for an ICMP error later (RFC 792).
    const quote = Buffer.from(frame.subarray(ETHERNET_HEADER_LENGTH, ETHERNET_HEADER_LENGTH + ip.headerLength + 8));
    const sock = net.connect({ host, port, noDelay: true, allowHalfOpen: true });
    flow.dialSocket = sock;
    const fail = (kind: "refused" | "unreachable" | "net-unreachable") => {
      if (flow.dialTimer) clearTimeout(flow.dialTimer);
      flow.dialTimer = undefined;
      sock.destroy();
      flow.dialSocket = undefined;
      if (this.tcpFlows.get(key) !== flow) return;
      if (kind === "refused") this.sendRstFor(ip, syn);
      else this.sendIcmpQuote(quote, ip.dst, ICMP_DEST_UNREACHABLE, kind === "net-unreachable" ? ICMP_UNREACH_NET : ICMP_UNREACH_HOST);
      this.removeTcpFlow(flow, kind === "refused" ? "refused" : "unreachable");
    };
    flow.dialTimer = setTimeout(
      () =>
        this.guard(() => {
          this.log(`tcp: connect to ${host}:${port} timed out after ${this.limits.connectTimeoutMs} ms`);
          fail("unreachable");
        }),
      this.limits.connectTimeoutMs,
    );
    const onError = (err: NodeJS.ErrnoException) =>
      this.guard(() => {
        if (err.code === "ECONNREFUSED") fail("refused");
        else if (err.code === "ENETUNREACH") fail("net-unreachable");
        else if (err.code === "EHOSTUNREACH" || err.code === "ETIMEDOUT") fail("unreachable");
        else fail("refused");
      });
    sock.once("error", onError);
    sock.once("connect", () => this.guard(() => {
      sock.off("error", onError);
      if (flow.dialTimer) clearTimeout(flow.dialTimer);
      flow.dialTimer = undefined;
      flow.dialSocket = undefined;
      if (this.tcpFlows.get(key) !== flow) {
        sock.destroy();
        return;
      }
      sock.pause();
      const bridge = new HostSocketBridge(sock, this.corkDuringBurst, this.guard);
      flow.app = bridge;
      flow.entry.state = "SYN_RECEIVED";
      const conn = TcpConnection.accept(syn, this.tcpConfig(seg.dstPort, seg.srcPort), this.hooksFor(flow, bridge), this.timers);
      flow.conn = conn;
      bridge.attach(conn);
    }));
  }

  private openDnsTcp(key: string, ip: Ipv4Header, seg: TcpSegment): void {
    const flow = this.newTcpFlow(key, ip.dst, seg.dstPort, seg.srcPort, "outbound");
    const session = new DnsTcpSession(this.dns, this.guard);
    flow.app = session;
    const conn = TcpConnection.accept(seg, this.tcpConfig(seg.dstPort, seg.srcPort), this.hooksFor(flow, session), this.timers);
    flow.conn = conn;
    session.conn = conn;
  }

  /** Published port: a host connection on 127.0.0.1:H becomes a connection from the gateway to guest:G. */
  private openInbound(sock: net.Socket, guestPort: number): void {
    if (this.closed || !this.transport.connected || !this.tracker.canOpen("tcp")) {
      sock.resetAndDestroy();
      return;
    }
    let localPort = 0;
    for (let i = 0; i < 16384; i++) {
      const p = this.nextInboundPort;
      this.nextInboundPort = p >= 65535 ? 49152 : p + 1;
      if (!this.tcpFlows.has(`${this.addresses.gatewayIp}:${p}:${guestPort}`)) {
        localPort = p;
        break;
      }
    }
    if (localPort === 0) {
      sock.resetAndDestroy();
      return;
    }
    this.inboundSockets.add(sock);
    sock.once("close", () => this.inboundSockets.delete(sock));
    sock.on("error", () => {});
    const key = `${this.addresses.gatewayIp}:${localPort}:${guestPort}`;
    const flow = this.newTcpFlow(key, this.addresses.gatewayIp, localPort, guestPort, "inbound");
    const bridge = new HostSocketBridge(sock, this.corkDuringBurst, this.guard);
    flow.app = bridge;
    const conn = TcpConnection.connect(this.tcpConfig(localPort, guestPort), this.hooksFor(flow, bridge), this.timers);
    flow.conn = conn;
    bridge.attach(conn);
  }

  private removeTcpFlow(flow: TcpFlow, reason: string): void {
    if (this.tcpFlows.get(flow.key) !== flow) return;
    this.tcpFlows.delete(flow.key);
    if (flow.conn) {
      this.blockedSenders.delete(flow.conn);
      this.ackQueue.delete(flow.conn);
    }
    if (flow.dialTimer) clearTimeout(flow.dialTimer);
    flow.dialSocket?.destroy();
    this.syncTcpEntry(flow);
    flow.entry.state = `CLOSED (${reason})`;
    const snap = this.snapshotOf(flow.entry);
    this.tracker.close(flow.entry);
    this.emit("flow-close", snap);
  }

  private syncTcpEntry(f: TcpFlow): void {
    if (!f.conn) return;
    f.entry.bytesFromGuest = f.conn.bytesFromGuest;
    f.entry.bytesToGuest = f.conn.bytesToGuest;
    if (f.conn.state !== "CLOSED") f.entry.state = f.conn.state;
  }

  private emitTcp(flow: TcpFlow, conn: TcpConnection, seg: OutgoingSegment): void {
    const optLen = tcpOptionsLength(seg.options);
    const tcpLen = 20 + optLen + seg.dataLength;
    const a = this.addresses;
    const prefixed = allocPrefixedFrame(ETHERNET_HEADER_LENGTH + IPV4_HEADER_LENGTH + tcpLen);
    const frame = prefixed.subarray(4);
    writeEthernet(frame, this.guestMac, a.gatewayMac, ETHERTYPE_IPV4);
    writeIpv4(frame, ETHERNET_HEADER_LENGTH, {
      totalLength: IPV4_HEADER_LENGTH + tcpLen,
      identification: this.nextIpId(),
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
    this.sendPrefixed(prefixed);
  }

  /** RST for a segment that has no connection (RFC 9293 §3.10.7.1). */
  private sendRstFor(ip: Ipv4Header, seg: TcpSegment): void {
    const segLen = seg.payload.length + (seg.flags & TCP_SYN ? 1 : 0) + (seg.flags & TCP_FIN ? 1 : 0);
    const hasAck = (seg.flags & TCP_ACK) !== 0;
    const tcpLen = 20;
    this.sendIpv4(ip.dst, ip.src, IP_PROTO_TCP, tcpLen, (buf, o) => {
      writeTcpHeader(buf, o, {
        srcPort: seg.dstPort,
        dstPort: seg.srcPort,
        seq: hasAck ? seg.ack : 0,
        ack: hasAck ? 0 : (seg.seq + segLen) >>> 0,
        flags: hasAck ? TCP_RST : TCP_RST | TCP_ACK,
        window: 0,
      });
      finishTcpChecksum(buf, o, tcpLen, ip.dst, ip.src);
    });
  }

  // ------------------------------------------------------------------ policy, ICMP errors, output

  private deny(protocol: Protocol, guestPort: number, dstIp: number, dstPort: number, rule: string): void {
    this.counters.denied++;
    const dst = `${ipToString(dstIp)}:${dstPort}`;
    const error = new PolicyDeniedError(`egress ${protocol} to ${dst} denied by ${rule}`, rule);
    this.log(`policy: denied ${protocol} ${ipToString(this.addresses.guestIp)}:${guestPort} -> ${dst} by ${rule}`);
    this.emit("denied", { protocol, guestPort, dstIp: ipToString(dstIp), dstPort, rule, error });
  }

  private sendIcmpError(frame: Buffer, ip: Ipv4Header, type: number, code: number): void {
    const start = ETHERNET_HEADER_LENGTH;
    const quoteLen = Math.min(ip.totalLength, ip.headerLength + 8);
    this.sendIcmpQuote(frame.subarray(start, start + quoteLen), this.addresses.gatewayIp, type, code);
  }

  private sendIcmpQuote(quote: Uint8Array, src: number, type: number, code: number): void {
    const len = 8 + quote.length;
    this.sendIpv4(src, this.addresses.guestIp, IP_PROTO_ICMP, len, (buf, o) => {
      buf.fill(0, o, o + 8);
      buf.set(quote, o + 8);
      finishIcmp(buf, o, len, type, code);
    });
  }

  private sendIpv4(
    src: number,
    dst: number,
    protocol: number,
    payloadLength: number,
    fill: (buf: Buffer, offset: number) => void,
    dstMac: Uint8Array = this.guestMac,
  ): void {
    const prefixed = allocPrefixedFrame(ETHERNET_HEADER_LENGTH + IPV4_HEADER_LENGTH + payloadLength);
    const frame = prefixed.subarray(4);
    writeEthernet(frame, dstMac, this.addresses.gatewayMac, ETHERTYPE_IPV4);
    writeIpv4(frame, ETHERNET_HEADER_LENGTH, {
      totalLength: IPV4_HEADER_LENGTH + payloadLength,
      identification: this.nextIpId(),
      protocol,
      src,
      dst,
      dontFragment: true,
    });
    fill(frame, ETHERNET_HEADER_LENGTH + IPV4_HEADER_LENGTH);
    this.sendPrefixed(prefixed);
  }

  private nextIpId(): number {
    this.ipId = (this.ipId + 1) & 0xffff;
    return this.ipId;
  }

  /** Sends a buffer that already starts with the 4-byte length prefix (one write instead of two). */
  private sendPrefixed(prefixed: Buffer): void {
    if (this.closed) return;
    const frame = prefixed.subarray(4);
    this.pcap?.write(frame);
    if (this.transport.sendPrefixed(prefixed)) {
      this.counters.framesOut++;
      this.counters.bytesOut += frame.length;
    } else {
      countDrop(this.counters, this.transport.connected ? "transport-backpressure" : "no-vm-connected");
    }
  }

  private sendFrame(frame: Buffer): void {
    if (this.closed) return;
    this.pcap?.write(frame);
    if (this.transport.send(frame)) {
      this.counters.framesOut++;
      this.counters.bytesOut += frame.length;
    } else {
      countDrop(this.counters, this.transport.connected ? "transport-backpressure" : "no-vm-connected");
    }
  }

  private sweep(): void {
    const now = Date.now();
    for (const f of [...this.udpFlows.values()]) {
      if (now - f.entry.lastActivityAt > this.limits.udpIdleTimeoutMs) this.closeUdpFlow(f);
    }
    for (const flow of [...this.tcpFlows.values()]) {
      if (now - flow.entry.lastActivityAt <= this.limits.tcpIdleTimeoutMs) continue;
      this.log(`tcp: evicting idle flow to ${flow.entry.remoteIp}:${flow.entry.remotePort}`);
      if (flow.conn) flow.conn.abort("timeout");
      else this.removeTcpFlow(flow, "idle");
    }
  }

  private snapshotOf(e: FlowEntry): FlowSnapshot {
    const t = Date.now();
    return { ...e, ageMs: t - e.createdAt, idleMs: t - e.lastActivityAt };
  }

  private log(line: string): void {
    this.logSink(line);
    if (this.listenerCount("log") > 0) this.emit("log", line);
  }
}
