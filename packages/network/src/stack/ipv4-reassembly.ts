/**
 * IPv4 fragment reassembly (RFC 791 §3.2, with RFC 815's hole idea simplified to a sorted
 * list). Pure: time is injected. Bounded in datagrams in progress, size and age.
 */
/**
 * What one datagram in progress may hold: the bytes of its parts (repeats included: a guest resending one
 * fragment must not grow it) and their count (a 64 KiB datagram needs 45 parts at MTU 1500, 120 at 576).
 * With `maxDatagrams` this bounds the whole table (64 × 64 KiB) and the sort done per fragment.
 */
const MAX_DATAGRAM_BYTES = 65535;
const MAX_PARTS = 256;

interface Pending {
  parts: Array<{ offset: number; data: Buffer }>;
  bytes: number;
  totalLength: number | undefined;
  firstSeenMs: number;
}

export class Ipv4Reassembler {
  private readonly pending = new Map<string, Pending>();

  constructor(
    private readonly maxDatagrams = 64,
    private readonly timeoutMs = 5000,
    private readonly now: () => number = Date.now,
  ) {}

  /**
   * Adds one fragment's payload. Returns the whole IP payload once complete, "pending" while
   * parts are missing, or "dropped" when limits or overlaps make it unusable.
   */
  add(src: number, dst: number, protocol: number, id: number, offset: number, moreFragments: boolean, payload: Uint8Array): Buffer | "pending" | "dropped" {
    this.expire();
    const key = `${src}:${dst}:${protocol}:${id}`;
    let p = this.pending.get(key);
    if (!p) {
      if (this.pending.size >= this.maxDatagrams) return "dropped";
      p = { parts: [], bytes: 0, totalLength: undefined, firstSeenMs: this.now() };
      this.pending.set(key, p);
    }
    const end = offset + payload.length;
    if (end > 65535 - 20 || (!moreFragments && p.totalLength !== undefined && p.totalLength !== end)) {
      this.pending.delete(key);
      return "dropped";
    }
    if (p.parts.length >= MAX_PARTS || p.bytes + payload.length > MAX_DATAGRAM_BYTES) {
      this.pending.delete(key);
      return "dropped";
    }
    if (!moreFragments) p.totalLength = end;
    p.parts.push({ offset, data: Buffer.from(payload) });
    p.bytes += payload.length;
    if (p.totalLength === undefined) return "pending";
    p.parts.sort((a, b) => a.offset - b.offset);
    let covered = 0;
    for (const part of p.parts) {
      if (part.offset > covered) return "pending";
      covered = Math.max(covered, part.offset + part.data.length);
    }
    if (covered < p.totalLength) return "pending";
    const out = Buffer.alloc(p.totalLength);
    for (const part of p.parts) part.data.copy(out, part.offset, 0, Math.min(part.data.length, p.totalLength - part.offset));
    this.pending.delete(key);
    return out;
  }

  get inProgress(): number {
    return this.pending.size;
  }

  private expire(): void {
    const cutoff = this.now() - this.timeoutMs;
    for (const [k, p] of this.pending) if (p.firstSeenMs < cutoff) this.pending.delete(k);
  }
}
