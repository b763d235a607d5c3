import { seqAdd, seqDiff, seqGt, seqLe, seqLt } from "./seq.js";

/** At most this many out-of-order segments are kept, whatever their size. */
const MAX_SEGMENTS = 4096;

/**
 * Out-of-order segments inside the receive window, sorted by seq (overlaps allowed; trimmed when
 * drained), and the SACK blocks (RFC 2018) that describe them. Bounded in bytes by the receive
 * buffer and in count.
 */
export class Reassembly {
  private readonly segments: Array<{ seq: number; data: Buffer }> = [];
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
    if (room <= 0 || this.segments.length >= MAX_SEGMENTS || this.bytes + Math.min(payload.length, room) > max) return false;
    const data = Buffer.from(payload.subarray(0, Math.min(payload.length, room)));
    this.lastSeq = seq;
    const list = this.segments;
    let lo = 0;
    let hi = list.length;
    while (lo < hi) {
      const mid = (lo + hi) >>> 1;
      if (seqLt(list[mid]!.seq, seq)) lo = mid + 1;
      else hi = mid;
    }
    const at = list[lo];
    if (at && at.seq === seq) {
      if (at.data.length < data.length) {
        this.bytes += data.length - at.data.length;
        at.data = data;
      }
      return true;
    }
    list.splice(lo, 0, { seq, data });
    this.bytes += data.length;
    return true;
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
    return rcvNxt;
  }

  /** Up to three SACK blocks: the one holding the latest arrival first (RFC 2018 §4), then the highest. */
  sackBlocks(): Array<[number, number]> | undefined {
    if (this.segments.length === 0) return undefined;
    const ranges: Array<[number, number]> = [];
    for (const e of this.segments) {
      const end = seqAdd(e.seq, e.data.length);
      const last = ranges[ranges.length - 1];
      if (last && seqLe(e.seq, last[1])) {
        if (seqGt(end, last[1])) last[1] = end;
      } else ranges.push([e.seq, end]);
    }
    const latest = this.lastSeq;
    ranges.sort((a, b) => {
      const ina = seqLe(a[0], latest) && seqLt(latest, a[1]);
      const inb = seqLe(b[0], latest) && seqLt(latest, b[1]);
      if (ina !== inb) return ina ? -1 : 1;
      return seqDiff(b[0], a[0]);
    });
    return ranges.slice(0, 3);
  }

  clear(): void {
    this.segments.length = 0;
    this.bytes = 0;
  }
}
