import { seqAdd, seqGe } from "./seq.js";

export interface RtoBounds {
  initialRtoMs?: number;
  minRtoMs?: number;
  maxRtoMs?: number;
}

/**
 * Round-trip estimator and retransmission timeout (RFC 6298): one segment timed at a time
 * (Karn's rule: timing is dropped on any retransmission), exponential backoff on timeouts.
 */
export class RttEstimator {
  rto: number;
  private srtt = 0;
  private rttvar = 0;
  /** Sequence number whose acknowledgment ends the measurement in progress. */
  private timedSeq: number | undefined;
  private timedAt = 0;

  constructor(private readonly bounds: RtoBounds) {
    this.rto = bounds.initialRtoMs ?? 1000;
  }

  get maxRto(): number {
    return this.bounds.maxRtoMs ?? 30_000;
  }

  /** Starts timing a segment [seq, seq+len) sent at `now`, unless one is already timed. */
  sent(seq: number, len: number, now: number): void {
    if (this.timedSeq === undefined) {
      this.timedSeq = seqAdd(seq, len);
      this.timedAt = now;
    }
  }

  /** An ACK up to `ack` arrived at `now`: takes a sample if it covers the timed segment. */
  acked(ack: number, now: number): void {
    if (this.timedSeq !== undefined && seqGe(ack, this.timedSeq)) {
      this.sample(now - this.timedAt);
      this.timedSeq = undefined;
    }
  }

  /** Karn's rule: a retransmission makes the current measurement ambiguous. */
  cancel(): void {
    this.timedSeq = undefined;
  }

  backoff(ceiling = this.maxRto): void {
    this.rto = Math.min(this.rto * 2, ceiling);
  }

  private sample(ms: number): void {
    if (this.srtt === 0) {
      this.srtt = ms;
      this.rttvar = ms / 2;
    } else {
      this.rttvar = 0.75 * this.rttvar + 0.25 * Math.abs(this.srtt - ms);
      this.srtt = 0.875 * this.srtt + 0.125 * ms;
    }
    const min = this.bounds.minRtoMs ?? 200;
    this.rto = Math.min(this.maxRto, Math.max(min, this.srtt + Math.max(10, 4 * this.rttvar)));
  }
}
