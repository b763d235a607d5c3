import { ARP_REQUEST, buildArpFrame } from "../src/wire/arp.js";
import { checksum } from "../src/wire/checksum.js";
import { BROADCAST_MAC, ETHERNET_HEADER_LENGTH, ETHERTYPE_IPV4, writeEthernet } from "../src/wire/ethernet.js";
import { finishIcmp, ICMP_ECHO_REQUEST } from "../src/wire/icmp.js";
import { IP_PROTO_ICMP, IP_PROTO_TCP, IP_PROTO_UDP, writeIpv4 } from "../src/wire/ipv4.js";
import { finishTcpChecksum, type TcpOptions, writeTcpHeader } from "../src/wire/tcp.js";
import { writeUdp } from "../src/wire/udp.js";
import type { SlotAddresses } from "../src/index.js";

/** Frame builders playing the guest's part in unit and fuzz tests. */
export class GuestFrames {
  constructor(readonly a: SlotAddresses) {}

  ipv4(dst: number, protocol: number, payload: Buffer, src = this.a.guestIp, dstMac = this.a.gatewayMac): Buffer {
    const f = Buffer.alloc(ETHERNET_HEADER_LENGTH + 20 + payload.length);
    writeEthernet(f, dstMac, this.a.guestMac, ETHERTYPE_IPV4);
    writeIpv4(f, ETHERNET_HEADER_LENGTH, { totalLength: 20 + payload.length, identification: 1, protocol, src, dst, dontFragment: true });
    payload.copy(f, ETHERNET_HEADER_LENGTH + 20);
    return f;
  }

  tcp(o: { dst: number; sport: number; dport: number; seq: number; ack?: number; flags: number; window?: number; options?: TcpOptions; payload?: Buffer }): Buffer {
    const payload = o.payload ?? Buffer.alloc(0);
    const seg = Buffer.alloc(60 + payload.length);
    const hlen = writeTcpHeader(seg, 0, {
      srcPort: o.sport,
      dstPort: o.dport,
      seq: o.seq >>> 0,
      ack: (o.ack ?? 0) >>> 0,
      flags: o.flags,
      window: o.window ?? 65535,
      ...(o.options ? { options: o.options } : {}),
    });
    payload.copy(seg, hlen);
    const tcp = seg.subarray(0, hlen + payload.length);
    finishTcpChecksum(tcp, 0, tcp.length, this.a.guestIp, o.dst);
    return this.ipv4(o.dst, IP_PROTO_TCP, Buffer.from(tcp));
  }

  udp(dst: number, sport: number, dport: number, payload: Buffer, src = this.a.guestIp): Buffer {
    const d = Buffer.alloc(8 + payload.length);
    payload.copy(d, 8);
    writeUdp(d, 0, sport, dport, d.length, src, dst);
    return this.ipv4(dst, IP_PROTO_UDP, d, src, dst === 0xffffffff ? BROADCAST_MAC : this.a.gatewayMac);
  }

  icmpEcho(dst: number, id: number, seq: number, data: Buffer): Buffer {
    const m = Buffer.alloc(8 + data.length);
    m.writeUInt16BE(id, 4);
    m.writeUInt16BE(seq, 6);
    data.copy(m, 8);
    finishIcmp(m, 0, m.length, ICMP_ECHO_REQUEST, 0);
    return this.ipv4(dst, IP_PROTO_ICMP, m);
  }

  arpWhoHas(target: number): Buffer {
    return buildArpFrame(BROADCAST_MAC, this.a.guestMac, ARP_REQUEST, this.a.guestMac, this.a.guestIp, new Uint8Array(6), target);
  }

  dhcp(messageType: number, xid: number): Buffer {
    const b = Buffer.alloc(300);
    b[0] = 1;
    b[1] = 1;
    b[2] = 6;
    b.writeUInt32BE(xid, 4);
    Buffer.from(this.a.guestMac).copy(b, 28);
    b.writeUInt32BE(0x63825363, 236);
    Buffer.from([53, 1, messageType, 255]).copy(b, 240);
    return this.udp(0xffffffff, 68, 67, b, 0);
  }
}

/** Recomputes IPv4 and TCP/UDP/ICMP checksums of a (possibly mutated) frame in place, where the headers allow. */
export function fixChecksums(f: Buffer): void {
  if (f.length < 34 || f.readUInt16BE(12) !== ETHERTYPE_IPV4) return;
  const ihl = (f[14]! & 0x0f) * 4;
  if (ihl < 20 || 14 + ihl > f.length) return;
  f.writeUInt16BE(0, 24);
  f.writeUInt16BE(checksum(f, 14, ihl), 24);
  const total = Math.min(f.readUInt16BE(16), f.length - 14);
  const l4 = 14 + ihl;
  const len = total - ihl;
  if (len <= 0) return;
  const src = f.readUInt32BE(26);
  const dst = f.readUInt32BE(30);
  const proto = f[23];
  if (proto === IP_PROTO_TCP && len >= 20) finishTcpChecksum(f, l4, len, src, dst);
  else if (proto === IP_PROTO_UDP && len >= 8) {
    f.writeUInt16BE(len, l4 + 4);
    writeUdp(f, l4, f.readUInt16BE(l4), f.readUInt16BE(l4 + 2), len, src, dst);
  } else if (proto === IP_PROTO_ICMP && len >= 4) finishIcmp(f, l4, len, f[l4]!, f[l4 + 1]!);
}
