import { checksum } from "./checksum.js";
import { readIp, writeIp } from "./ip-address.js";

export const IP_PROTO_ICMP = 1;
export const IP_PROTO_TCP = 6;
export const IP_PROTO_UDP = 17;
export const IPV4_HEADER_LENGTH = 20;
const FLAG_DF = 0x4000;
const FLAG_MF = 0x2000;

export interface Ipv4Header {
  headerLength: number;
  totalLength: number;
  identification: number;
  dontFragment: boolean;
  moreFragments: boolean;
  fragmentOffset: number;
  ttl: number;
  protocol: number;
  src: number;
  dst: number;
}

export type Ipv4ParseError = "truncated" | "version" | "header-length" | "total-length" | "checksum";

/**
 * Parses and validates an IPv4 header at `offset` (RFC 791): version, IHL, total length
 * against the buffer, and the header checksum. Pure; returns the reason on failure.
 */
export function parseIpv4(buf: Uint8Array, offset: number): Ipv4Header | Ipv4ParseError {
  const avail = buf.length - offset;
  if (avail < IPV4_HEADER_LENGTH) return "truncated";
  const vihl = buf[offset]!;
  if (vihl >>> 4 !== 4) return "version";
  const headerLength = (vihl & 0x0f) * 4;
  if (headerLength < IPV4_HEADER_LENGTH || headerLength > avail) return "header-length";
  const totalLength = (buf[offset + 2]! << 8) | buf[offset + 3]!;
  if (totalLength < headerLength || totalLength > avail) return "total-length";
  if (checksum(buf, offset, headerLength) !== 0) return "checksum";
  const flagsFrag = (buf[offset + 6]! << 8) | buf[offset + 7]!;
  return {
    headerLength,
    totalLength,
    identification: (buf[offset + 4]! << 8) | buf[offset + 5]!,
    dontFragment: (flagsFrag & FLAG_DF) !== 0,
    moreFragments: (flagsFrag & FLAG_MF) !== 0,
    fragmentOffset: (flagsFrag & 0x1fff) * 8,
    ttl: buf[offset + 8]!,
    protocol: buf[offset + 9]!,
    src: readIp(buf, offset + 12),
    dst: readIp(buf, offset + 16),
  };
}

export interface Ipv4WriteOptions {
  totalLength: number;
  identification: number;
  protocol: number;
  src: number;
  dst: number;
  ttl?: number;
  dontFragment?: boolean;
  moreFragments?: boolean;
  fragmentOffset?: number;
}

/** Writes a 20-byte IPv4 header with its checksum. */
export function writeIpv4(buf: Uint8Array, offset: number, o: Ipv4WriteOptions): void {
  buf[offset] = 0x45;
  buf[offset + 1] = 0;
  buf[offset + 2] = o.totalLength >>> 8;
  buf[offset + 3] = o.totalLength & 0xff;
  buf[offset + 4] = (o.identification >>> 8) & 0xff;
  buf[offset + 5] = o.identification & 0xff;
  const flags =
    (o.dontFragment ? FLAG_DF : 0) | (o.moreFragments ? FLAG_MF : 0) | (((o.fragmentOffset ?? 0) / 8) & 0x1fff);
  buf[offset + 6] = flags >>> 8;
  buf[offset + 7] = flags & 0xff;
  buf[offset + 8] = o.ttl ?? 64;
  buf[offset + 9] = o.protocol;
  buf[offset + 10] = 0;
  buf[offset + 11] = 0;
  writeIp(buf, offset + 12, o.src);
  writeIp(buf, offset + 16, o.dst);
  const c = checksum(buf, offset, IPV4_HEADER_LENGTH);
  buf[offset + 10] = c >>> 8;
  buf[offset + 11] = c & 0xff;
}
