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
  /** Query bytes not taken yet: store[head, tail). */
  private store: Buffer = Buffer.alloc(0);
  private head = 0;
  private tail = 0;
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
    this.append(data);
    if (this.buffered() > MAX_PENDING_BYTES) {
      this.conn?.abort();
      return;
    }
    this.takeQueries();
  }

  /**
   * Appends in amortised O(1) per byte. Concatenating the whole backlog for each segment made a guest trickling 1-byte
   * segments while the session is blocked cost up to ~100 us per frame (quadratic up to MAX_PENDING_BYTES).
   */
  private append(data: Buffer): void {
    const pending = this.tail - this.head;
    if (this.tail + data.length > this.store.length) {
      const need = pending + data.length;
      if (need <= this.store.length / 2) {
        this.store.copyWithin(0, this.head, this.tail);
      } else {
        const grown = Buffer.allocUnsafe(Math.max(2 * need, 4096));
        this.store.copy(grown, 0, this.head, this.tail);
        this.store = grown;
      }
      this.head = 0;
      this.tail = pending;
    }
    data.copy(this.store, this.tail);
    this.tail += data.length;
  }

  /** Drops `n` taken bytes from the front. */
  private consume(n: number): void {
    this.head += n;
    if (this.head === this.tail) {
      this.head = this.tail = 0;
      // A burst's storage is not kept for the session's life.
      if (this.store.length > 64 * 1024) this.store = Buffer.alloc(0);
    }
  }

  /** Starts answering buffered queries while the limits allow. */
  private takeQueries(): void {
    while (!this.closed && this.buffered() >= 2 && this.outstanding < MAX_OUTSTANDING) {
      if ((this.conn?.sendBuffered ?? 0) >= MAX_QUEUED_ANSWER_BYTES) return;
      const n = this.store.readUInt16BE(this.head);
      if (this.buffered() < 2 + n) return;
      const msg = Buffer.from(this.store.subarray(this.head + 2, this.head + 2 + n));
      this.consume(2 + n);
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
    const pending = this.buffered();
    const complete = pending >= 2 && pending >= 2 + this.store.readUInt16BE(this.head);
    if (!complete) this.conn?.end();
  }

  deliverEnd(): void {
    this.ended = true;
    this.endIfDone();
  }

  buffered(): number {
    return this.tail - this.head;
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
    this.store = Buffer.alloc(0);
    this.head = this.tail = 0;
    this.onDone();
  }
}
