import { simdSum } from "./simd-memory.js";

/**
 * Internet checksum (RFC 1071). The partial sum is kept in a double: adding 32-bit words is
 * safe up to 2^21 words before precision is lost, far above any frame we handle, and summing
 * 32-bit words then folding gives the same result as summing 16-bit words (end-around carry).
 */
export function checksumPartial(buf: Uint8Array, offset: number, length: number, initial = 0): number {
  if (length >= 64) {
    // Frames built in the SIMD memory's slabs (everything the stack sends) are summed there; other
    // regions of 512 bytes or more are copied there first (wire/simd-memory.ts).
    const s = simdSum(buf, offset, length);
    if (s >= 0) return initial + s;
  }
  return checksumPartialScalar(buf, offset, length, initial);
}

/** checksumPartial() in JavaScript only (the fallback; exported for tests). */
export function checksumPartialScalar(buf: Uint8Array, offset: number, length: number, initial = 0): number {
  if (length >= 64 && ((buf.byteOffset + offset) & 1) === 0) return checksumPartialWords(buf, offset, length, initial);
  return checksumPartialBytes(buf, offset, length, initial);
}

/**
 * Fast path: sum native (little-endian) 32-bit words through a Uint32Array, fold, then swap the
 * bytes. The ones' complement sum does not depend on byte order (RFC 1071 §2(B)), as long as
 * 16-bit words start at even offsets from the region start, hence the 2-byte head step.
 */
function checksumPartialWords(buf: Uint8Array, offset: number, length: number, initial: number): number {
  let sum = initial;
  let i = offset;
  const end = offset + length;
  if (((buf.byteOffset + i) & 3) === 2) {
    sum += (buf[i]! << 8) | buf[i + 1]!;
    i += 2;
  }
  const words = (end - i) >>> 2;
  const u32 = new Uint32Array(buf.buffer, buf.byteOffset + i, words);
  // Eight independent double accumulators, each adding whole 32-bit words: a double holds every
  // integer below 2^53 exactly, so each can take 2^21 words (far above 65,535 bytes) before
  // folding, and independent chains let the CPU overlap the adds (about 2.4x the speed of one
  // int32 chain splitting each word into 16-bit halves).
  let a = 0;
  let b = 0;
  let c = 0;
  let d = 0;
  let e = 0;
  let f = 0;
  let g = 0;
  let h = 0;
  let k = 0;
  const k8 = words & ~7;
  for (; k < k8; k += 8) {
    a += u32[k]!;
    b += u32[k + 1]!;
    c += u32[k + 2]!;
    d += u32[k + 3]!;
    e += u32[k + 4]!;
    f += u32[k + 5]!;
    g += u32[k + 6]!;
    h += u32[k + 7]!;
  }
  for (; k < words; k++) a += u32[k]!;
  let le = a + b + c + d + e + f + g + h;
  while (le > 0xffff) le = (le % 0x10000) + Math.floor(le / 0x10000);
  sum += ((le & 0xff) << 8) | (le >>> 8);
  i += words * 4;
  return checksumPartialBytes(buf, i, end - i, sum);
}

function checksumPartialBytes(buf: Uint8Array, offset: number, length: number, initial: number): number {
  let sum = initial;
  let i = offset;
  const end = offset + length;
  const end4 = end - 3;
  for (; i < end4; i += 4) {
    sum += ((buf[i]! << 24) | (buf[i + 1]! << 16) | (buf[i + 2]! << 8) | buf[i + 3]!) >>> 0;
  }
  if (i + 1 < end) {
    sum += (buf[i]! << 8) | buf[i + 1]!;
    i += 2;
  }
  if (i < end) sum += buf[i]! << 8;
  return sum;
}

export function checksumFinish(sum: number): number {
  while (sum > 0xffff) sum = (sum % 0x10000) + Math.floor(sum / 0x10000);
  return ~sum & 0xffff;
}

export function checksum(buf: Uint8Array, offset: number, length: number): number {
  return checksumFinish(checksumPartial(buf, offset, length));
}

/** Pseudo-header sum for TCP/UDP over IPv4 (RFC 9293 §3.1, RFC 768). */
export function pseudoHeaderSum(src: number, dst: number, protocol: number, length: number): number {
  return (src >>> 16) + (src & 0xffff) + (dst >>> 16) + (dst & 0xffff) + protocol + length;
}
