import { checksumFinish, checksumPartial } from "./checksum.js";
import { ETHERNET_HEADER_LENGTH, ETHERTYPE_IPV6, writeEthernet } from "./ethernet.js";
import { TCP_ACK, TCP_FIN, TCP_RST, TCP_SYN } from "./tcp.js";

/**
 * Just enough IPv6 to refuse it promptly: the stack relays IPv4 only, and a guest that tries IPv6
 * must fail at once instead of waiting for neighbour discovery or a SYN retransmission timeout.
 */
export const IPV6_HEADER_LENGTH = 40;
export const IP6_NEXT_TCP = 6;
export const IP6_NEXT_UDP = 17;
export const IP6_NEXT_ICMPV6 = 58;
export const ICMPV6_DEST_UNREACHABLE = 1;
export const ICMPV6_UNREACH_ADMIN_PROHIBITED = 1;
export const ICMPV6_NEIGHBOR_SOLICITATION = 135;
export const ICMPV6_NEIGHBOR_ADVERTISEMENT = 136;

export interface Ipv6Header {
  payloadLength: number;
  nextHeader: number;
  hopLimit: number;
  src: Uint8Array;
  dst: Uint8Array;
}

/** Parses the fixed header at `off` (a frame's IPv6 packet); undefined when truncated or not version 6. */
export function parseIpv6(frame: Uint8Array, off: number): Ipv6Header | undefined {
  if (frame.length < off + IPV6_HEADER_LENGTH || frame[off]! >> 4 !== 6) return undefined;
  const payloadLength = (frame[off + 4]! << 8) | frame[off + 5]!;
  if (off + IPV6_HEADER_LENGTH + payloadLength > frame.length) return undefined;
  return {
    payloadLength,
    nextHeader: frame[off + 6]!,
    hopLimit: frame[off + 7]!,
    src: frame.subarray(off + 8, off + 24),
    dst: frame.subarray(off + 24, off + 40),
  };
}

export function ipv6ToString(a: Uint8Array): string {
  const groups: string[] = [];
  for (let i = 0; i < 16; i += 2) groups.push(((a[i]! << 8) | a[i + 1]!).toString(16));
  // Longest run of zero groups (length >= 2) becomes "::".
  let best = -1;
  let bestLen = 1;
  for (let i = 0; i < 8; ) {
    if (groups[i] !== "0") {
      i++;
      continue;
    }
    let j = i;
    while (j < 8 && groups[j] === "0") j++;
    if (j - i > bestLen) {
      best = i;
      bestLen = j - i;
    }
    i = j;
  }
  if (best < 0) return groups.join(":");
  return `${groups.slice(0, best).join(":")}::${groups.slice(best + bestLen).join(":")}`;
}

function upperLayerChecksum(buf: Uint8Array, off: number, len: number, src: Uint8Array, dst: Uint8Array, next: number): number {
  let sum = checksumPartial(src, 0, 16);
  sum = checksumPartial(dst, 0, 16, sum);
  sum += len + next;
  return checksumFinish(checksumPartial(buf, off, len, sum));
}

/** An Ethernet + IPv6 frame carrying `payload` (whose checksum is filled in at `checksumAt`). */
function frameV6(dstMac: Uint8Array, srcMac: Uint8Array, src: Uint8Array, dst: Uint8Array, next: number, payload: Uint8Array, checksumAt: number, hopLimit = 64): Buffer {
  const f = Buffer.alloc(ETHERNET_HEADER_LENGTH + IPV6_HEADER_LENGTH + payload.length);
  writeEthernet(f, dstMac, srcMac, ETHERTYPE_IPV6);
  const o = ETHERNET_HEADER_LENGTH;
  f[o] = 0x60;
  f.writeUInt16BE(payload.length, o + 4);
  f[o + 6] = next;
  f[o + 7] = hopLimit;
  f.set(src, o + 8);
  f.set(dst, o + 24);
  const p = o + IPV6_HEADER_LENGTH;
  f.set(payload, p);
  f.writeUInt16BE(0, p + checksumAt);
  f.writeUInt16BE(upperLayerChecksum(f, p, payload.length, src, dst, next), p + checksumAt);
  return f;
}

/** RST for a TCP segment carried in `ip` (RFC 9293 §3.10.7.1), sent back from its destination. */
export function buildTcpRstV6(ip: Ipv6Header, tcp: Uint8Array, dstMac: Uint8Array, srcMac: Uint8Array): Buffer | undefined {
  if (tcp.length < 20) return undefined;
  const flags = tcp[13]!;
  if (flags & TCP_RST) return undefined;
  const dataOffset = (tcp[12]! >> 4) * 4;
  if (dataOffset < 20 || dataOffset > tcp.length) return undefined;
  const seq = ((tcp[4]! << 24) | (tcp[5]! << 16) | (tcp[6]! << 8) | tcp[7]!) >>> 0;
  const ack = ((tcp[8]! << 24) | (tcp[9]! << 16) | (tcp[10]! << 8) | tcp[11]!) >>> 0;
  const segLen = tcp.length - dataOffset + (flags & TCP_SYN ? 1 : 0) + (flags & TCP_FIN ? 1 : 0);
  const r = Buffer.alloc(20);
  r.set(tcp.subarray(2, 4), 0);
  r.set(tcp.subarray(0, 2), 2);
  if (flags & TCP_ACK) {
    r.writeUInt32BE(ack, 4);
    r[13] = TCP_RST;
  } else {
    r.writeUInt32BE((seq + segLen) >>> 0, 8);
    r[13] = TCP_RST | TCP_ACK;
  }
  r[12] = 5 << 4;
  return frameV6(dstMac, srcMac, ip.dst, ip.src, IP6_NEXT_TCP, r, 16);
}

/** ICMPv6 destination unreachable, administratively prohibited (RFC 4443 §3.1), quoting the packet. */
export function buildAdminProhibitedV6(packet: Uint8Array, ip: Ipv6Header, dstMac: Uint8Array, srcMac: Uint8Array): Buffer {
  const quote = packet.subarray(0, Math.min(packet.length, 1280 - IPV6_HEADER_LENGTH - 8));
  const m = Buffer.alloc(8 + quote.length);
  m[0] = ICMPV6_DEST_UNREACHABLE;
  m[1] = ICMPV6_UNREACH_ADMIN_PROHIBITED;
  m.set(quote, 8);
  return frameV6(dstMac, srcMac, ip.dst, ip.src, IP6_NEXT_ICMPV6, m, 2);
}

/**
 * Neighbor advertisement (RFC 4861 §7.2.4) answering a solicitation for any target with `mac`, so
 * the guest sends its packet (and gets refused) instead of waiting ~3 s for resolution to fail.
 * Undefined for duplicate address detection (source ::), which must stay unanswered.
 */
export function buildNeighborAdvertisement(ip: Ipv6Header, icmp: Uint8Array, guestMac: Uint8Array, mac: Uint8Array): Buffer | undefined {
  if (icmp.length < 24 || icmp[0] !== ICMPV6_NEIGHBOR_SOLICITATION || icmp[1] !== 0 || ip.hopLimit !== 255) return undefined;
  if (ip.src.every((b) => b === 0)) return undefined;
  const target = icmp.subarray(8, 24);
  const m = Buffer.alloc(32);
  m[0] = ICMPV6_NEIGHBOR_ADVERTISEMENT;
  m[4] = 0x60; // solicited + override
  m.set(target, 8);
  m[24] = 2; // target link-layer address option
  m[25] = 1;
  m.set(mac, 26);
  return frameV6(guestMac, mac, target, ip.src, IP6_NEXT_ICMPV6, m, 2, 255);
}
