/**
 * Allocation-light DNS message reading for the interceptor's hot path: the guest's query (header,
 * one question, an optional OPT record) and the upstream's answer (rcode, TTLs, A records, where the
 * TTL fields sit), read in place instead of decoding every record into objects with dns-packet.
 *
 * Both readers are conservative: they vouch for a message only when dns-packet's `decode` would
 * accept it and read the same values (same name rules: labels ≤ 63, names ≤ 254, compression
 * pointers only to earlier data); anything else returns undefined and the caller uses dns-packet as
 * before, so what the guest sees for an odd or malformed message does not change.
 */

const TYPE_A = 1;
const TYPE_NS = 2;
const TYPE_CNAME = 5;
const TYPE_SOA = 6;
const TYPE_PTR = 12;
const TYPE_AAAA = 28;
const TYPE_OPT = 41;
const CLASS_IN = 1;

/** dns-packet's names for the common query types (others take the dns-packet path). */
const TYPE_NAMES = new Map<number, string>([
  [1, "A"],
  [2, "NS"],
  [5, "CNAME"],
  [6, "SOA"],
  [12, "PTR"],
  [15, "MX"],
  [16, "TXT"],
  [28, "AAAA"],
  [33, "SRV"],
  [255, "ANY"],
  [257, "CAA"],
]);

/** A guest query read in place: what the interceptor needs to route, cache and answer it. */
export interface QueryInfo {
  id: number;
  /** Header flags without QR (as dns-packet's `flags`). */
  flags: number;
  /** Question name as dns-packet decodes it (labels joined with ".", "." for the root). */
  name: string;
  /** Question type and class as dns-packet names them ("A", "IN"). */
  type: string;
  class: string;
  /** Whether an OPT record came with it, and its UDP payload size. */
  opt: boolean;
  udpPayloadSize: number;
}

/** Characters a fast-path label may hold (dns-packet would decode others identically, but rarely needed). */
function plainLabelByte(c: number): boolean {
  return (c >= 0x61 && c <= 0x7a) || (c >= 0x41 && c <= 0x5a) || (c >= 0x30 && c <= 0x39) || c === 0x2d || c === 0x5f || c === 0x2a;
}

/**
 * The common query shape (QR=0, opcode 0, one IN question with a plain uncompressed name, no
 * answer/authority records, at most one OPT additional whose options dns-packet reads as opaque
 * data) read without dns-packet; undefined for anything else.
 */
export function readQuery(buf: Buffer): QueryInfo | undefined {
  const len = buf.length;
  if (len < 17) return undefined;
  const rawFlags = buf.readUInt16BE(2);
  if (rawFlags & 0x8000 || (rawFlags >> 11) & 0xf) return undefined;
  if (buf.readUInt16BE(4) !== 1 || buf.readUInt16BE(6) !== 0 || buf.readUInt16BE(8) !== 0) return undefined;
  const arcount = buf.readUInt16BE(10);
  if (arcount > 1) return undefined;
  let off = 12;
  let name = "";
  let total = 0;
  for (;;) {
    if (off >= len) return undefined;
    const l = buf[off++]!;
    if (l === 0) break;
    if (l > 63 || off + l > len) return undefined;
    total += l + 1;
    if (total > 254) return undefined;
    for (let i = off; i < off + l; i++) if (!plainLabelByte(buf[i]!)) return undefined;
    name = name.length === 0 ? buf.toString("latin1", off, off + l) : `${name}.${buf.toString("latin1", off, off + l)}`;
    off += l;
  }
  if (off + 4 > len) return undefined;
  const type = TYPE_NAMES.get(buf.readUInt16BE(off));
  if (type === undefined || buf.readUInt16BE(off + 2) !== CLASS_IN) return undefined;
  off += 4;
  let opt = false;
  let udpPayloadSize = 0;
  if (arcount === 1) {
    // Root name, type OPT, payload size, extended rcode/version/flags, rdlength, options.
    if (off + 11 > len || buf[off] !== 0 || buf.readUInt16BE(off + 1) !== TYPE_OPT) return undefined;
    udpPayloadSize = buf.readUInt16BE(off + 3);
    let rdlen = buf.readUInt16BE(off + 9);
    let o = off + 11;
    while (rdlen > 0) {
      if (o + 4 > len || rdlen < 4) return undefined;
      const code = buf.readUInt16BE(o);
      const olen = buf.readUInt16BE(o + 2);
      // Options dns-packet decodes into fields (ECS, keep-alive, key tag) take its path.
      if (code === 8 || code === 11 || code === 14 || o + 4 + olen > len || 4 + olen > rdlen) return undefined;
      o += 4 + olen;
      rdlen -= 4 + olen;
    }
    opt = true;
  }
  return { id: buf.readUInt16BE(0), flags: rawFlags & 0x7fff, name: name.length === 0 ? "." : name, type, class: "IN", opt, udpPayloadSize };
}

/** An upstream answer read in place. */
export interface AnswerInfo {
  rcode: number;
  /** Non-OPT records in the answer section, and the smallest TTL among them. */
  answerCount: number;
  minAnswerTtl: number;
  /** The first SOA in the authority section: its TTL and MINIMUM (negative caching), or -1. */
  soaTtl: number;
  soaMinimum: number;
  /** A records of the answer section (address as a number) with their TTLs. */
  a: Array<{ ip: number; ttl: number }>;
  /** Offsets of the TTL fields of the answer and authority records (not OPT): aged on a cache hit. */
  ttlOffsets: number[];
  /**
   * Whether every record is of a type whose data was checked here (A, AAAA, CNAME, NS, PTR, SOA,
   * OPT): then dns-packet would decode the message without error. Otherwise the caller decodes it
   * to keep dns-packet's verdict on malformed data.
   */
  checked: boolean;
}

/**
 * End of the name at `off` (the offset just past it in the message's own bytes), or -1 when
 * dns-packet would refuse it (overflow, bad label, pointer not to earlier data, too long).
 */
function skipName(buf: Buffer, off: number): number {
  const len = buf.length;
  let oldOffset = off;
  let end = -1;
  let total = 0;
  for (let guard = 0; guard < 256; guard++) {
    if (off >= len) return -1;
    const l = buf[off++]!;
    if (l === 0) return end < 0 ? off : end;
    if ((l & 0xc0) === 0) {
      if (off + l > len) return -1;
      total += l + 1;
      if (total > 254) return -1;
      off += l;
    } else if ((l & 0xc0) === 0xc0) {
      if (off + 1 > len) return -1;
      const jump = ((l & 0x3f) << 8) | buf[off]!;
      if (jump >= oldOffset) return -1;
      if (end < 0) end = off + 1;
      off = jump;
      oldOffset = jump;
    } else {
      return -1;
    }
  }
  return -1;
}

/** Reads an upstream answer's header, question and records; undefined if their structure does not hold. */
export function readAnswer(buf: Buffer): AnswerInfo | undefined {
  const len = buf.length;
  if (len < 12) return undefined;
  const rcode = buf[3]! & 0x0f;
  const qd = buf.readUInt16BE(4);
  const counts = [buf.readUInt16BE(6), buf.readUInt16BE(8), buf.readUInt16BE(10)];
  let off = 12;
  for (let i = 0; i < qd; i++) {
    off = skipName(buf, off);
    if (off < 0 || off + 4 > len) return undefined;
    off += 4;
  }
  const info: AnswerInfo = { rcode, answerCount: 0, minAnswerTtl: Infinity, soaTtl: -1, soaMinimum: -1, a: [], ttlOffsets: [], checked: true };
  for (let section = 0; section < 3; section++) {
    for (let i = 0; i < counts[section]!; i++) {
      off = skipName(buf, off);
      if (off < 0 || off + 10 > len) return undefined;
      const type = buf.readUInt16BE(off);
      const ttl = buf.readUInt32BE(off + 4);
      const rdlen = buf.readUInt16BE(off + 8);
      const data = off + 10;
      if (data + rdlen > len) return undefined;
      if (type === TYPE_OPT) {
        // dns-packet reads OPT's options as opaque data, except ECS, keep-alive and key tags.
        let o = data;
        while (o < data + rdlen) {
          if (o + 4 > data + rdlen) return undefined;
          const code = buf.readUInt16BE(o);
          if (code === 8 || code === 11 || code === 14) info.checked = false;
          o += 4 + buf.readUInt16BE(o + 2);
        }
        if (o !== data + rdlen) return undefined;
      } else {
        if (section < 2) info.ttlOffsets.push(off + 4);
        if (type === TYPE_A || type === TYPE_AAAA) {
          if (rdlen !== (type === TYPE_A ? 4 : 16)) return undefined;
          if (type === TYPE_A && section === 0) info.a.push({ ip: buf.readUInt32BE(data), ttl });
        } else if (type === TYPE_CNAME || type === TYPE_NS || type === TYPE_PTR) {
          if (skipName(buf, data) !== data + rdlen) info.checked = false;
        } else if (type === TYPE_SOA) {
          const m = skipName(buf, data);
          const r = m < 0 ? -1 : skipName(buf, m);
          if (r < 0 || r + 20 !== data + rdlen) return undefined;
          if (section === 1 && info.soaTtl < 0) {
            info.soaTtl = ttl;
            info.soaMinimum = buf.readUInt32BE(r + 16);
          }
        } else {
          info.checked = false;
        }
        if (section === 0) {
          info.answerCount++;
          if (ttl < info.minAnswerTtl) info.minAnswerTtl = ttl;
        }
      }
      off = data + rdlen;
    }
  }
  // A class other than IN, or a record's class with the mDNS flush bit, is read differently by dns-packet; not needed here.
  return info;
}

/**
 * Whether `answer` answers `query`'s question: one question with the same name (ASCII case aside),
 * type and class (RFC 5452 §9.1). An error answer (not NOERROR/NXDOMAIN) without a question and
 * without records also counts, as servers may leave the question out of FORMERR and the like.
 * Both first names sit uncompressed at offset 12 (a pointer there could only point into the header).
 */
export function answersQuestion(query: Buffer, answer: Buffer): boolean {
  if (query.length < 12 || answer.length < 12 || query.readUInt16BE(4) !== 1) return false;
  const qd = answer.readUInt16BE(4);
  if (qd === 0) {
    const rcode = answer[3]! & 0x0f;
    return rcode !== 0 && rcode !== 3 && answer.readUInt16BE(6) === 0 && answer.readUInt16BE(8) === 0;
  }
  if (qd !== 1) return false;
  let i = 12;
  for (;;) {
    if (i >= query.length || i >= answer.length) return false;
    const l = query[i]!;
    if (answer[i] !== l) return false;
    i++;
    if (l === 0) break;
    if (l > 63 || i + l > query.length || i + l > answer.length) return false;
    for (const end = i + l; i < end; i++) {
      let a = query[i]!;
      let b = answer[i]!;
      if (a >= 0x41 && a <= 0x5a) a |= 0x20;
      if (b >= 0x41 && b <= 0x5a) b |= 0x20;
      if (a !== b) return false;
    }
  }
  return i + 4 <= query.length && i + 4 <= answer.length && query.readUInt32BE(i) === answer.readUInt32BE(i);
}
