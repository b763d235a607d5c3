import type { TcpApplication } from "../proxy/host-bridge.js";
import type { TcpConnection } from "../tcp/tcp-connection.js";
import type { DnsInterceptor } from "./dns-interceptor.js";

/** Unparsed query bytes a session holds; past this the guest is not respecting the window: abort. */
const MAX_PENDING_BYTES = 256 * 1024;
/** Queries being answered at once per session. */
const MAX_OUTSTANDING = 16;
/** Answers queued toward the guest (unsent or unacknowledged) above which no new query is taken. */
const MAX_QUEUED_ANSWER_BYTES = 64 * 1024;

/**
 * DNS over TCP (RFC 7766) answered in-process: 2-byte length-prefixed messages, possibly pipelined.
 *
 * Back-pressure both ways: a new query is taken only while fewer than 16 are being answered and
 * less than 64 KiB of answers wait for the guest, so a guest that pipelines queries and never
 * reads the answers cannot make the host queue them without bound. Queries not yet taken stay
 * buffered and count as unread (`buffered()`), which closes the receive window toward the guest.
 */
export class DnsTcpSession implements TcpApplication {
  conn: TcpConnection | undefined;
  private buf: Buffer = Buffer.alloc(0);
  private outstanding = 0;
  private ended = false;
  private closed = false;

  constructor(
    private readonly interceptor: DnsInterceptor,
    private readonly guard: (fn: () => void) => void = (fn) => fn(),
    private readonly onDone: () => void = () => {},
  ) {}

  deliver(data: Buffer): void {
    // Copied: `data` is a view of the VM's frame, valid only during this call.
    this.buf = this.buf.length === 0 ? Buffer.from(data) : Buffer.concat([this.buf, data]);
    if (this.buf.length > MAX_PENDING_BYTES) {
      this.conn?.abort();
      return;
    }
    this.takeQueries();
  }

  /** Starts answering buffered queries while the limits allow. */
  private takeQueries(): void {
    while (!this.closed && this.buf.length >= 2 && this.outstanding < MAX_OUTSTANDING) {
      if ((this.conn?.sendBuffered ?? 0) >= MAX_QUEUED_ANSWER_BYTES) return;
      const n = this.buf.readUInt16BE(0);
      if (this.buf.length < 2 + n) return;
      const msg = Buffer.from(this.buf.subarray(2, 2 + n));
      this.buf = this.buf.subarray(2 + n);
      this.outstanding++;
      void this.interceptor.answer(msg, undefined).then(
        (resp) =>
          this.guard(() => {
            this.outstanding--;
            if (this.closed || !this.conn) return;
            if (resp) {
              const len = Buffer.allocUnsafe(2);
              len.writeUInt16BE(resp.length, 0);
              this.conn.send(Buffer.concat([len, resp]));
            }
            this.takeQueries();
            this.endIfDone();
          }),
        (err: unknown) =>
          this.guard(() => {
            throw err;
          }),
      );
    }
  }

  /** After the guest's FIN: ends once every complete query is answered (a trailing partial one never completes). */
  private endIfDone(): void {
    if (!this.ended || this.outstanding > 0) return;
    const complete = this.buf.length >= 2 && this.buf.length >= 2 + this.buf.readUInt16BE(0);
    if (!complete) this.conn?.end();
  }

  deliverEnd(): void {
    this.ended = true;
    this.endIfDone();
  }

  buffered(): number {
    return this.buf.length;
  }

  onSendSpace(): void {
    this.takeQueries();
    this.endIfDone();
  }

  onEstablished(): void {}

  onClosed(): void {
    this.release();
  }

  destroy(): void {
    this.release();
  }

  private release(): void {
    if (this.closed) return;
    this.closed = true;
    this.buf = Buffer.alloc(0);
    this.onDone();
  }
}
