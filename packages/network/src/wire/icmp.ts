import { checksum } from "./checksum.js";

export const ICMP_ECHO_REPLY = 0;
export const ICMP_DEST_UNREACHABLE = 3;
export const ICMP_ECHO_REQUEST = 8;
export const ICMP_TIME_EXCEEDED = 11;
export const ICMP_UNREACH_NET = 0;
export const ICMP_UNREACH_HOST = 1;
export const ICMP_UNREACH_PORT = 3;
export const ICMP_UNREACH_FRAG_NEEDED = 4;
export const ICMP_UNREACH_ADMIN_PROHIBITED = 13;

export interface IcmpHeader {
  type: number;
  code: number;
}

/** Parses an ICMP message (RFC 792) and checks its checksum. */
export function parseIcmp(buf: Uint8Array, offset: number, length: number): IcmpHeader | undefined {
  if (length < 8) return undefined;
  if (checksum(buf, offset, length) !== 0) return undefined;
  return { type: buf[offset]!, code: buf[offset + 1]! };
}

/** Writes the ICMP type/code/rest-of-header and fills the checksum over `length` bytes already in place. */
export function finishIcmp(buf: Uint8Array, offset: number, length: number, type: number, code: number): void {
  buf[offset] = type;
  buf[offset + 1] = code;
  buf[offset + 2] = 0;
  buf[offset + 3] = 0;
  const c = checksum(buf, offset, length);
  buf[offset + 2] = c >>> 8;
  buf[offset + 3] = c & 0xff;
}
