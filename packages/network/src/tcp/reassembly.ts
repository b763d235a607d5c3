import { seqAdd, seqDiff, seqGt, seqLe, seqLt } from "./seq.js";

/** At most this many out-of-order segments are kept, whatever their size. */
const MAX_SEGMENTS = 4096;
/**
 * What a queued segment costs beyond its payload (its entry, Buffer object and pool slot: ~160 B measured), charged
 * against the byte bound. Without it, 1-byte segments made the bound count-only: 4096 flows × 4096 segments of 1 byte
 * held +2.4 GiB of heap. Linux charges each out-of-order skb its truesize for the same reason.
 */
const SEGMENT_OVERHEAD_BYTES = 256;

/**
 * Out-of-order segments inside the receive window, sorted by seq (overlaps allowed; trimmed when
 * drained), and the ranges they cover (merged, disjoint, sorted), from which the SACK blocks
 * (RFC 2018) are read without walking the segments. Bounded in bytes (payload plus a per-segment
 * overhead) by the receive buffer, and in count.
 */
export class Reassembly {
  private readonly segments: Array<{ seq: number; data: Buffer }> = [];
  /** [left, right) of the queued data: disjoint, not adjacent, in sequence order. */
  private readonly ranges: Array<[number, number]> = [];
  private bytes = 0;
  private lastSeq = 0;

  /** `maxBytes`: the receive buffer, or a function giving its current size (a share of a budget). */
  constructor(private readonly maxBytes: number | (() => number)) {}

  get empty(): boolean {
    return this.segments.length === 0;
  }

  /**
   * Keeps the part of `payload` at `seq` that fits below the window edge (`room` bytes). Returns
   * false if it was dropped (no room, or the queue is full).
   */
  insert(seq: number, payload: Uint8Array, room: number): boolean {
    const max = typeof this.maxBytes === "number" ? this.maxBytes : this.maxBytes();
    const length = Math.min(payload.length, room);
    const charged = this.bytes + SEGMENT_OVERHEAD_BYTES * (this.segments.length + 1) + length;
    if (room <= 0 || this.segments.length >= MAX_SEGMENTS || charged > max) return false;
    const data = Buffer.from(payload.subarray(0, length));
    this.lastSeq = seq;
    const list = this.segments;
    const lo = partitionPoint(list, (e) => seqLt(e.seq, seq));
    const at = list[lo];
    if (at && at.seq === seq) {
      if (at.data.length < data.length) {
        this.bytes += data.length - at.data.length;
        at.data = data;
        this.addRange(seq, seqAdd(seq, data.length));
      }
      return true;
    }
    list.splice(lo, 0, { seq, data });
    this.bytes += data.length;
    this.addRange(seq, seqAdd(seq, data.length));
    return true;
  }

  /** Merges [left, right) into the ranges: O(log n) plus the ranges it swallows. */
  private addRange(left: number, right: number): void {
    const r = this.ranges;
    // First range whose right edge reaches `left` (touching counts: adjacent ranges merge).
    const lo = partitionPoint(r, (range) => seqLt(range[1], left));
    let end = lo;
    while (end < r.length && seqLe(r[end]![0], right)) {
      const [l, rr] = r[end]!;
      if (seqLt(l, left)) left = l;
      if (seqGt(rr, right)) right = rr;
      end++;
    }
    r.splice(lo, end - lo, [left, right]);
  }

  /**
   * Hands over, in order, the queued bytes that `rcvNxt` has reached; `deliver` returns the new
   * RCV.NXT. Returns the final RCV.NXT (unchanged if nothing became in-order).
   */
  drain(rcvNxt: number, deliver: (data: Buffer) => void): number {
    const list = this.segments;
    while (list.length > 0) {
      const e = list[0]!;
      if (seqGt(e.seq, rcvNxt)) break;
      list.shift();
      this.bytes -= e.data.length;
      const skip = seqDiff(rcvNxt, e.seq);
      if (skip >= e.data.length) continue;
      const data = e.data.subarray(skip);
      rcvNxt = seqAdd(rcvNxt, data.length);
      deliver(data);
    }
    // Ranges are merged across adjacency, so the one that reached rcvNxt was drained whole.
    while (this.ranges.length > 0 && seqLe(this.ranges[0]![0], rcvNxt)) {
      const first = this.ranges[0]!;
      if (seqGt(first[1], rcvNxt)) {
        first[0] = rcvNxt;
        break;
      }
      this.ranges.shift();
    }
    return rcvNxt;
  }

  /**
   * Up to three SACK blocks: the one holding the latest arrival first (RFC 2018 §4), then the highest.
   * Read from the merged ranges: O(log n) whatever the guest queued.
   */
  sackBlocks(): Array<[number, number]> | undefined {
    const r = this.ranges;
    if (r.length === 0) return undefined;
    const latest = this.lastSeq;
    // Just past the last range starting at or before the latest arrival.
    const lo = partitionPoint(r, (range) => seqLe(range[0], latest));
    const holding = lo > 0 && seqLt(latest, r[lo - 1]![1]) ? lo - 1 : -1;
    const blocks: Array<[number, number]> = [];
    if (holding >= 0) blocks.push([r[holding]![0], r[holding]![1]]);
    for (let i = r.length - 1; i >= 0 && blocks.length < 3; i--) if (i !== holding) blocks.push([r[i]![0], r[i]![1]]);
    return blocks;
  }

  clear(): void {
    this.segments.length = 0;
    this.ranges.length = 0;
    this.bytes = 0;
  }
}

/** The index of the first item of `list` that is not `before` (every `before` item precedes every other): O(log n). */
function partitionPoint<T>(list: readonly T[], before: (item: T) => boolean): number {
  let lo = 0;
  let hi = list.length;
  while (lo < hi) {
    const mid = (lo + hi) >>> 1;
    if (before(list[mid]!)) lo = mid + 1;
    else hi = mid;
  }
  return lo;
}
