import type { TcpApplication } from "../proxy/host-bridge.js";
import type { TcpConnection } from "../tcp/tcp-connection.js";
import type { DnsInterceptor } from "./dns-interceptor.js";

const MAX_PENDING_BYTES = 256 * 1024;

/** DNS over TCP (RFC 7766) answered in-process: 2-byte length-prefixed messages, possibly pipelined. */
export class DnsTcpSession implements TcpApplication {
  conn: TcpConnection | undefined;
  private buf: Buffer = Buffer.alloc(0);
  private outstanding = 0;
  private ended = false;
  private closed = false;

  constructor(
    private readonly interceptor: DnsInterceptor,
    private readonly guard: (fn: () => void) => void = (fn) => fn(),
  ) {}

  deliver(data: Buffer): void {
    // Copied: `data` is a view of the VM's frame, valid only during this call.
    this.buf = this.buf.length === 0 ? Buffer.from(data) : Buffer.concat([this.buf, data]);
    if (this.buf.length > MAX_PENDING_BYTES) {
      this.conn?.abort();
      return;
    }
    while (this.buf.length >= 2) {
      const n = this.buf.readUInt16BE(0);
      if (this.buf.length < 2 + n) break;
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
            if (this.ended && this.outstanding === 0) this.conn.end();
          }),
        (err: unknown) =>
          this.guard(() => {
            throw err;
          }),
      );
    }
  }

  deliverEnd(): void {
    this.ended = true;
    if (this.outstanding === 0) this.conn?.end();
  }

  buffered(): number {
    return 0;
  }

  onSendSpace(): void {}
  onEstablished(): void {}

  onClosed(): void {
    this.closed = true;
  }

  destroy(): void {
    this.closed = true;
  }
}
