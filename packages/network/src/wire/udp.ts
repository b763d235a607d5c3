import { checksumFinish, checksumPartial, pseudoHeaderSum } from "./checksum.js";
import { IP_PROTO_UDP } from "./ipv4.js";

export const UDP_HEADER_LENGTH = 8;

export interface UdpHeader {
  srcPort: number;
  dstPort: number;
  length: number;
}

export type UdpParseError = "truncated" | "length" | "checksum";

/** Parses a UDP datagram (RFC 768); a zero checksum means "not computed" and is accepted. */
export function parseUdp(
  buf: Uint8Array,
  offset: number,
  available: number,
  srcIp: number,
  dstIp: number,
): UdpHeader | UdpParseError {
  if (available < UDP_HEADER_LENGTH) return "truncated";
  const length = (buf[offset + 4]! << 8) | buf[offset + 5]!;
  if (length < UDP_HEADER_LENGTH || length > available) return "length";
  const sum = (buf[offset + 6]! << 8) | buf[offset + 7]!;
  if (sum !== 0) {
    const c = checksumFinish(checksumPartial(buf, offset, length, pseudoHeaderSum(srcIp, dstIp, IP_PROTO_UDP, length)));
    if (c !== 0) return "checksum";
  }
  return { srcPort: (buf[offset]! << 8) | buf[offset + 1]!, dstPort: (buf[offset + 2]! << 8) | buf[offset + 3]!, length };
}

/** Writes the UDP header over a payload already placed after it, with a real checksum. */
export function writeUdp(
  buf: Uint8Array,
  offset: number,
  srcPort: number,
  dstPort: number,
  length: number,
  srcIp: number,
  dstIp: number,
): void {
  buf[offset] = srcPort >>> 8;
  buf[offset + 1] = srcPort & 0xff;
  buf[offset + 2] = dstPort >>> 8;
  buf[offset + 3] = dstPort & 0xff;
  buf[offset + 4] = length >>> 8;
  buf[offset + 5] = length & 0xff;
  buf[offset + 6] = 0;
  buf[offset + 7] = 0;
  let c = checksumFinish(checksumPartial(buf, offset, length, pseudoHeaderSum(srcIp, dstIp, IP_PROTO_UDP, length)));
  if (c === 0) c = 0xffff;
  buf[offset + 6] = c >>> 8;
  buf[offset + 7] = c & 0xff;
}
