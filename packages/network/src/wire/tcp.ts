import { checksumFinish, checksumPartial, pseudoHeaderSum } from "./checksum.js";
import { IP_PROTO_TCP } from "./ipv4.js";

export const TCP_FIN = 0x01;
export const TCP_SYN = 0x02;
export const TCP_RST = 0x04;
export const TCP_PSH = 0x08;
export const TCP_ACK = 0x10;
export const TCP_URG = 0x20;
export const TCP_HEADER_LENGTH = 20;

export interface TcpOptions {
  mss?: number;
  windowScale?: number;
  sackPermitted?: boolean;
  /** SACK blocks [left, right) to emit (RFC 2018); parsing ignores received blocks. */
  sackBlocks?: Array<[number, number]>;
}

/** A parsed TCP segment; `payload` is a view into the frame (copy before keeping it). */
export interface TcpSegment {
  srcPort: number;
  dstPort: number;
  seq: number;
  ack: number;
  flags: number;
  window: number;
  options: TcpOptions;
  payload: Uint8Array;
}

export type TcpParseError = "truncated" | "data-offset" | "checksum";

/** Parses a TCP segment (RFC 9293 §3.1) including the options we understand (MSS, WS, SACK-permitted). */
export function parseTcp(
  buf: Uint8Array,
  offset: number,
  length: number,
  srcIp: number,
  dstIp: number,
  verifyChecksum = true,
): TcpSegment | TcpParseError {
  if (length < TCP_HEADER_LENGTH) return "truncated";
  const dataOffset = (buf[offset + 12]! >>> 4) * 4;
  if (dataOffset < TCP_HEADER_LENGTH || dataOffset > length) return "data-offset";
  if (verifyChecksum) {
    const c = checksumFinish(checksumPartial(buf, offset, length, pseudoHeaderSum(srcIp, dstIp, IP_PROTO_TCP, length)));
    if (c !== 0) return "checksum";
  }
  const options: TcpOptions = {};
  let i = offset + TCP_HEADER_LENGTH;
  const end = offset + dataOffset;
  while (i < end) {
    const kind = buf[i]!;
    if (kind === 0) break;
    if (kind === 1) {
      i++;
      continue;
    }
    if (i + 1 >= end) break;
    const len = buf[i + 1]!;
    if (len < 2 || i + len > end) break;
    if (kind === 2 && len === 4) options.mss = (buf[i + 2]! << 8) | buf[i + 3]!;
    else if (kind === 3 && len === 3) options.windowScale = Math.min(buf[i + 2]!, 14);
    else if (kind === 4 && len === 2) options.sackPermitted = true;
    i += len;
  }
  return {
    srcPort: (buf[offset]! << 8) | buf[offset + 1]!,
    dstPort: (buf[offset + 2]! << 8) | buf[offset + 3]!,
    seq: ((buf[offset + 4]! << 24) | (buf[offset + 5]! << 16) | (buf[offset + 6]! << 8) | buf[offset + 7]!) >>> 0,
    ack: ((buf[offset + 8]! << 24) | (buf[offset + 9]! << 16) | (buf[offset + 10]! << 8) | buf[offset + 11]!) >>> 0,
    flags: buf[offset + 13]! & 0x3f,
    window: (buf[offset + 14]! << 8) | buf[offset + 15]!,
    options,
    payload: buf.subarray(offset + dataOffset, offset + length),
  };
}

/** Length of the options block we emit (MSS 4 + NOP + WS 3), padded to 4-byte words. */
export function tcpOptionsLength(o: TcpOptions | undefined): number {
  if (!o) return 0;
  let n = 0;
  if (o.mss !== undefined) n += 4;
  if (o.windowScale !== undefined) n += 4;
  if (o.sackPermitted) n += 4;
  if (o.sackBlocks && o.sackBlocks.length > 0) n += 4 + 8 * o.sackBlocks.length;
  return n;
}

export interface TcpHeaderFields {
  srcPort: number;
  dstPort: number;
  seq: number;
  ack: number;
  flags: number;
  window: number;
  options?: TcpOptions;
}

/** Writes a TCP header (options included); returns the header length. Checksum is filled by finishTcpChecksum. */
export function writeTcpHeader(buf: Uint8Array, offset: number, f: TcpHeaderFields): number {
  const optLen = tcpOptionsLength(f.options);
  const hlen = TCP_HEADER_LENGTH + optLen;
  buf[offset] = f.srcPort >>> 8;
  buf[offset + 1] = f.srcPort & 0xff;
  buf[offset + 2] = f.dstPort >>> 8;
  buf[offset + 3] = f.dstPort & 0xff;
  buf[offset + 4] = f.seq >>> 24;
  buf[offset + 5] = (f.seq >>> 16) & 0xff;
  buf[offset + 6] = (f.seq >>> 8) & 0xff;
  buf[offset + 7] = f.seq & 0xff;
  buf[offset + 8] = f.ack >>> 24;
  buf[offset + 9] = (f.ack >>> 16) & 0xff;
  buf[offset + 10] = (f.ack >>> 8) & 0xff;
  buf[offset + 11] = f.ack & 0xff;
  buf[offset + 12] = (hlen / 4) << 4;
  buf[offset + 13] = f.flags;
  buf[offset + 14] = (f.window >>> 8) & 0xff;
  buf[offset + 15] = f.window & 0xff;
  buf[offset + 16] = 0;
  buf[offset + 17] = 0;
  buf[offset + 18] = 0;
  buf[offset + 19] = 0;
  let i = offset + TCP_HEADER_LENGTH;
  const o = f.options;
  if (o?.mss !== undefined) {
    buf[i++] = 2;
    buf[i++] = 4;
    buf[i++] = o.mss >>> 8;
    buf[i++] = o.mss & 0xff;
  }
  if (o?.windowScale !== undefined) {
    buf[i++] = 1;
    buf[i++] = 3;
    buf[i++] = 3;
    buf[i++] = o.windowScale;
  }
  if (o?.sackPermitted) {
    buf[i++] = 1;
    buf[i++] = 1;
    buf[i++] = 4;
    buf[i++] = 2;
  }
  if (o?.sackBlocks && o.sackBlocks.length > 0) {
    buf[i++] = 1;
    buf[i++] = 1;
    buf[i++] = 5;
    buf[i++] = 2 + 8 * o.sackBlocks.length;
    for (const [l, r] of o.sackBlocks) {
      writeU32(buf, i, l);
      writeU32(buf, i + 4, r);
      i += 8;
    }
  }
  return hlen;
}

export function finishTcpChecksum(buf: Uint8Array, offset: number, length: number, srcIp: number, dstIp: number): void {
  const c = checksumFinish(checksumPartial(buf, offset, length, pseudoHeaderSum(srcIp, dstIp, IP_PROTO_TCP, length)));
  buf[offset + 16] = c >>> 8;
  buf[offset + 17] = c & 0xff;
}

function writeU32(buf: Uint8Array, i: number, v: number): void {
  buf[i] = v >>> 24;
  buf[i + 1] = (v >>> 16) & 0xff;
  buf[i + 2] = (v >>> 8) & 0xff;
  buf[i + 3] = v & 0xff;
}
