/** cwnd never grows past this (bounded by the send buffer anyway). */
const MAX_CWND = 64 * 1024 * 1024;

/**
 * Reno congestion control (RFC 5681): slow start, congestion avoidance, fast retransmit on the
 * third duplicate ACK, and collapse to one segment on a retransmission timeout.
 */
export class CongestionControl {
  cwnd: number;
  ssthresh = 0x7fffffff;
  private dupAcks = 0;

  constructor(mss: number) {
    this.cwnd = 10 * mss;
  }

  /** Initial window once the peer's MSS is known (RFC 6928). */
  reset(mss: number): void {
    this.cwnd = 10 * mss;
  }

  /** New data acknowledged. */
  acked(bytes: number, mss: number): void {
    if (this.cwnd < this.ssthresh) this.cwnd += Math.min(bytes, mss);
    else this.cwnd += Math.max(1, Math.floor((mss * mss) / this.cwnd));
    this.cwnd = Math.min(this.cwnd, MAX_CWND);
    this.dupAcks = 0;
  }

  /** A duplicate ACK; returns true on the third, when the caller fast-retransmits. */
  duplicateAck(): boolean {
    this.dupAcks++;
    return this.dupAcks === 3;
  }

  /** Fast retransmit: halve, inflate by the three segments that left the network. */
  fastRetransmit(inFlight: number, mss: number): void {
    this.ssthresh = Math.max(Math.floor(inFlight / 2), 2 * mss);
    this.cwnd = this.ssthresh + 3 * mss;
  }

  /** Retransmission timeout: halve the threshold, restart from one segment. */
  timeout(inFlight: number, mss: number): void {
    this.ssthresh = Math.max(Math.floor(inFlight / 2), 2 * mss);
    this.cwnd = mss;
    this.dupAcks = 0;
  }
}
