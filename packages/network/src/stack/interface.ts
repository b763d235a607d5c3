import type { Protocol } from "../policy/egress-policy.js";
import type { UdpRelay } from "../forward/udp-relay.js";
import type { DhcpServer } from "../services/dhcp-server.js";
import { ARP_REPLY, ARP_REQUEST, buildArpFrame, parseArp } from "../wire/arp.js";
import {
  BROADCAST_MAC,
  ETHERNET_HEADER_LENGTH,
  ETHERTYPE_ARP,
  ETHERTYPE_IPV4,
  ETHERTYPE_IPV6,
  macEquals,
  parseEthernet,
} from "../wire/ethernet.js";
import { ICMP_ECHO_REPLY, ICMP_ECHO_REQUEST, ICMP_TIME_EXCEEDED, finishIcmp, parseIcmp } from "../wire/icmp.js";
import { IP_PROTO_ICMP, IP_PROTO_TCP, IP_PROTO_UDP, IPV4_HEADER_LENGTH, type Ipv4Header, parseIpv4, writeIpv4 } from "../wire/ipv4.js";
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
import { TCP_SYN } from "../wire/tcp.js";
import { UDP_HEADER_LENGTH, parseUdp } from "../wire/udp.js";
import type { StackContext } from "./context.js";
import { countDrop } from "./counters.js";
import { Ipv4Reassembler } from "./ipv4-reassembly.js";
import type { TcpSocketSet } from "./tcp-sockets.js";

/**
 * The gateway's interface on the VM link: validates and dispatches each frame (Ethernet, ARP,
 * IPv4 with reassembly, the IPv6 refusal), answers ARP and ICMP echo itself, and hands TCP to
 * the socket set, DHCP to the server, DNS and other UDP to the relay.
 */
export class NetworkInterface {
  private readonly reassembler = new Ipv4Reassembler();

  constructor(
    private readonly ctx: StackContext,
    private readonly tcp: TcpSocketSet,
    private readonly udp: UdpRelay,
    private readonly dhcp: DhcpServer,
  ) {}

  receive(frame: Buffer): void {
    const ctx = this.ctx;
    const c = ctx.counters;
    c.framesIn++;
    c.bytesIn += frame.length;
    try {
      const eth = parseEthernet(frame);
      if (!eth) return countDrop(c, "ethernet-truncated");
      if (frame.length > ctx.mtu + ETHERNET_HEADER_LENGTH) return countDrop(c, "oversize");
      if (!macEquals(eth.dst, ctx.addresses.gatewayMac) && !macEquals(eth.dst, BROADCAST_MAC)) {
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
      ctx.log(`internal error while handling a frame: ${(err as Error).stack ?? String(err)}`);
    }
  }

  private receiveArp(frame: Buffer): void {
    const arp = parseArp(frame.subarray(ETHERNET_HEADER_LENGTH));
    if (!arp) return countDrop(this.ctx.counters, "arp-malformed");
    const a = this.ctx.addresses;
    if (arp.senderIp === a.guestIp) this.ctx.out.guestMac = Uint8Array.from(arp.senderMac);
    if (arp.operation === ARP_REQUEST && arp.targetIp === a.gatewayIp) {
      this.ctx.out.sendFrame(buildArpFrame(arp.senderMac, a.gatewayMac, ARP_REPLY, a.gatewayMac, a.gatewayIp, arp.senderMac, arp.senderIp));
    } else if (arp.operation !== ARP_REPLY) {
      countDrop(this.ctx.counters, "arp-not-for-gateway");
    }
  }

  private receiveIpv4(frame: Buffer): void {
    const ctx = this.ctx;
    const ip = parseIpv4(frame, ETHERNET_HEADER_LENGTH);
    if (typeof ip === "string") return countDrop(ctx.counters, `ipv4-${ip}`);
    if (ip.moreFragments || ip.fragmentOffset !== 0) return this.receiveFragment(frame, ip);
    const a = ctx.addresses;
    const l4 = ETHERNET_HEADER_LENGTH + ip.headerLength;
    const l4len = ip.totalLength - ip.headerLength;
    if (ip.src !== a.guestIp) {
      if (ip.src === 0 && ip.protocol === IP_PROTO_UDP) return this.receiveUdp(frame, ip, l4, l4len);
      return countDrop(ctx.counters, "ipv4-source-not-guest");
    }
    if (ip.ttl <= 1 && ip.dst !== a.gatewayIp) {
      ctx.out.sendIcmpError(frame, ip, ICMP_TIME_EXCEEDED, 0);
      return countDrop(ctx.counters, "ipv4-ttl-expired");
    }
    this.receiveL4(frame, ip, l4, l4len);
  }

  private receiveL4(frame: Buffer, ip: Ipv4Header, l4: number, l4len: number): void {
    switch (ip.protocol) {
      case IP_PROTO_TCP:
        return this.tcp.receive(frame, ip, l4, l4len);
      case IP_PROTO_UDP:
        return this.receiveUdp(frame, ip, l4, l4len);
      case IP_PROTO_ICMP:
        return this.receiveIcmp(frame, ip, l4, l4len);
      default:
        return countDrop(this.ctx.counters, "ipv4-protocol");
    }
  }

  /**
   * The stack relays IPv4 only. So that a guest trying IPv6 fails at once rather than hanging:
   * neighbour solicitations are answered with the gateway MAC, TCP gets RST, UDP gets ICMPv6
   * administratively prohibited; everything else is dropped.
   */
  private receiveIpv6(frame: Buffer, srcMac: Uint8Array): void {
    const ctx = this.ctx;
    const c = ctx.counters;
    const ip = parseIpv6(frame, ETHERNET_HEADER_LENGTH);
    if (!ip) return countDrop(c, "ipv6-malformed");
    const start = ETHERNET_HEADER_LENGTH + IPV6_HEADER_LENGTH;
    const payload = frame.subarray(start, start + ip.payloadLength);
    const gw = ctx.addresses.gatewayMac;
    if (ip.nextHeader === IP6_NEXT_ICMPV6) {
      const na = buildNeighborAdvertisement(ip, payload, srcMac, gw);
      if (!na) return countDrop(c, "ipv6");
      return ctx.out.sendFrame(na);
    }
    if (ip.dst[0] === 0xff) return countDrop(c, "ipv6");
    if (ip.nextHeader === IP6_NEXT_TCP) {
      const rst = buildTcpRstV6(ip, payload, srcMac, gw);
      if (!rst) return countDrop(c, "ipv6");
      if (payload[13]! & TCP_SYN) this.denyIpv6("tcp", ip, payload);
      ctx.out.sendFrame(rst);
      return countDrop(c, "ipv6-refused");
    }
    if (ip.nextHeader === IP6_NEXT_UDP && payload.length >= 8) {
      this.denyIpv6("udp", ip, payload);
      ctx.out.sendFrame(buildAdminProhibitedV6(frame.subarray(ETHERNET_HEADER_LENGTH, start + ip.payloadLength), ip, srcMac, gw));
      return countDrop(c, "ipv6-refused");
    }
    return countDrop(c, "ipv6");
  }

  private denyIpv6(protocol: Protocol, ip: Ipv6Header, l4: Uint8Array): void {
    this.ctx.counters.denied++;
    const port = (i: number) => (l4[i]! << 8) | l4[i + 1]!;
    this.ctx.log(`policy: denied ${protocol} [${ipv6ToString(ip.src)}]:${port(0)} -> [${ipv6ToString(ip.dst)}]:${port(2)} by builtin:ipv6-not-relayed`);
  }

  /** Guest datagrams bigger than its MTU (UDP mostly) arrive fragmented; rebuild and re-dispatch them. */
  private receiveFragment(frame: Buffer, ip: Ipv4Header): void {
    const c = this.ctx.counters;
    if (ip.src !== this.ctx.addresses.guestIp) return countDrop(c, "ipv4-source-not-guest");
    const start = ETHERNET_HEADER_LENGTH + ip.headerLength;
    const r = this.reassembler.add(ip.src, ip.dst, ip.protocol, ip.identification, ip.fragmentOffset, ip.moreFragments, frame.subarray(start, ETHERNET_HEADER_LENGTH + ip.totalLength));
    if (r === "pending") return;
    if (r === "dropped") return countDrop(c, "ipv4-fragment-dropped");
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
    if (typeof reparsed === "string") return countDrop(c, "ipv4-fragment-dropped");
    this.receiveL4(whole, reparsed, ETHERNET_HEADER_LENGTH + IPV4_HEADER_LENGTH, r.length);
  }

  private receiveIcmp(frame: Buffer, ip: Ipv4Header, off: number, len: number): void {
    const c = this.ctx.counters;
    const icmp = parseIcmp(frame, off, len);
    if (!icmp) return countDrop(c, "icmp-malformed");
    if (icmp.type !== ICMP_ECHO_REQUEST) return countDrop(c, "icmp-type");
    if (ip.dst !== this.ctx.addresses.gatewayIp) return countDrop(c, "icmp-echo-not-gateway");
    this.ctx.out.sendIpv4(ip.dst, ip.src, IP_PROTO_ICMP, len, (buf, o) => {
      frame.copy(buf, o, off, off + len);
      finishIcmp(buf, o, len, ICMP_ECHO_REPLY, 0);
    });
  }

  private receiveUdp(frame: Buffer, ip: Ipv4Header, off: number, len: number): void {
    const c = this.ctx.counters;
    const udp = parseUdp(frame, off, len, ip.src, ip.dst);
    if (typeof udp === "string") return countDrop(c, `udp-${udp}`);
    const payload = frame.subarray(off + UDP_HEADER_LENGTH, off + udp.length);
    if (udp.dstPort === 67 && udp.srcPort === 68) return this.dhcp.receive(payload);
    if (ip.src !== this.ctx.addresses.guestIp) return countDrop(c, "ipv4-source-not-guest");
    if (udp.dstPort === 53) return this.udp.answerDns(ip, udp.srcPort, Buffer.from(payload));
    this.udp.relay(frame, ip, udp.srcPort, udp.dstPort, payload);
  }
}
