import { randomInt } from "node:crypto";
import type { FrameLink } from "../transport/frame-link.js";
import { ETHERNET_HEADER_LENGTH, ETHERTYPE_IPV4, writeEthernet } from "../wire/ethernet.js";
import { finishIcmp } from "../wire/icmp.js";
import { IP_PROTO_ICMP, IP_PROTO_TCP, IP_PROTO_UDP, IPV4_HEADER_LENGTH, type Ipv4Header, writeIpv4 } from "../wire/ipv4.js";
import { TCP_ACK, TCP_FIN, TCP_RST, TCP_SYN, type TcpSegment, finishTcpChecksum, writeTcpHeader } from "../wire/tcp.js";
import { UDP_HEADER_LENGTH, writeUdp } from "../wire/udp.js";
import type { SlotAddresses } from "./addressing.js";
import { type StackCounters, countDrop } from "./counters.js";

/**
 * Everything the stack sends toward the guest goes through here: Ethernet + IPv4 framing, the IP
 * identification counter, UDP (fragmented when bigger than the MTU), ICMP errors, RSTs for
 * segments without a connection, and the output counters.
 */
export class FrameOutput {
  /** The guest's MAC as last announced in ARP (the slot's MAC until then). */
  guestMac: Uint8Array;
  closed = false;
  private ipId = randomInt(0xffff);

  constructor(
    private readonly link: FrameLink,
    private readonly addresses: SlotAddresses,
    private readonly mtu: number,
    private readonly counters: StackCounters,
  ) {
    this.guestMac = addresses.guestMac;
  }

  get connected(): boolean {
    return this.link.connected;
  }

  get pendingWriteBytes(): number {
    return this.link.pendingWriteBytes;
  }

  nextIpId(): number {
    this.ipId = (this.ipId + 1) & 0xffff;
    return this.ipId;
  }

  /** A buffer for one frame toward the guest, built in place then passed to commit(). */
  reserve(frameLength: number): Buffer {
    return this.link.reserve(frameLength);
  }

  commit(frame: Buffer): void {
    if (this.closed) return;
    if (this.link.commit(frame)) {
      this.counters.framesOut++;
      this.counters.bytesOut += frame.length;
    } else {
      countDrop(this.counters, this.link.connected ? "transport-backpressure" : "no-vm-connected");
    }
  }

  sendFrame(frame: Buffer): void {
    if (this.closed) return;
    if (this.link.send(frame)) {
      this.counters.framesOut++;
      this.counters.bytesOut += frame.length;
    } else {
      countDrop(this.counters, this.link.connected ? "transport-backpressure" : "no-vm-connected");
    }
  }

  /** One IPv4 packet (DF set) whose payload `fill` writes at `offset`. */
  sendIpv4(
    src: number,
    dst: number,
    protocol: number,
    payloadLength: number,
    fill: (buf: Buffer, offset: number) => void,
    dstMac: Uint8Array = this.guestMac,
  ): void {
    const frame = this.link.reserve(ETHERNET_HEADER_LENGTH + IPV4_HEADER_LENGTH + payloadLength);
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
    this.commit(frame);
  }

  /** UDP to the guest; fragments replies bigger than the MTU (RFC 791) rather than sending them malformed. */
  sendUdp(srcIp: number, srcPort: number, dstPort: number, payload: Uint8Array): void {
    this.sendUdpRaw(srcIp, this.addresses.guestIp, srcPort, dstPort, payload, this.guestMac);
  }

  sendUdpRaw(srcIp: number, dstIp: number, srcPort: number, dstPort: number, payload: Uint8Array, dstMac: Uint8Array): void {
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
      const frame = this.link.reserve(ETHERNET_HEADER_LENGTH + IPV4_HEADER_LENGTH + n);
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
      this.commit(frame);
    }
  }

  /** ICMP error from the gateway quoting the IP header + 8 bytes of `frame` (RFC 792). */
  sendIcmpError(frame: Buffer, ip: Ipv4Header, type: number, code: number): void {
    const start = ETHERNET_HEADER_LENGTH;
    const quoteLen = Math.min(ip.totalLength, ip.headerLength + 8);
    this.sendIcmpQuote(frame.subarray(start, start + quoteLen), this.addresses.gatewayIp, type, code);
  }

  sendIcmpQuote(quote: Uint8Array, src: number, type: number, code: number): void {
    const len = 8 + quote.length;
    this.sendIpv4(src, this.addresses.guestIp, IP_PROTO_ICMP, len, (buf, o) => {
      buf.fill(0, o, o + 8);
      buf.set(quote, o + 8);
      finishIcmp(buf, o, len, type, code);
    });
  }

  /** RST for a segment that has no connection (RFC 9293 §3.10.7.1). */
  sendRstFor(ip: Ipv4Header, seg: TcpSegment): void {
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
}
