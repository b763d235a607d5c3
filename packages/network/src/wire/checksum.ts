/**
 * Internet checksum (RFC 1071). The partial sum is kept in a double: adding 32-bit words is
 * safe up to 2^21 words before precision is lost, far above any frame we handle, and summing
 * 32-bit words then folding gives the same result as summing 16-bit words (end-around carry).
 */
export function checksumPartial(buf: Uint8Array, offset: number, length: number, initial = 0): number {
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
