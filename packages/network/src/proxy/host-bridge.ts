import type net from "node:net";
import type { TcpCloseReason, TcpConnection } from "../tcp/tcp-connection.js";

/** What a TCP flow's application side looks like to the stack: a host socket or a local service. */
export interface TcpApplication {
  deliver(data: Buffer): void;
  deliverEnd(): void;
  buffered(): number;
  onSendSpace(): void;
  onEstablished(): void;
  onClosed(reason: TcpCloseReason): void;
  /** Stack shutdown: release everything without waiting. */
  destroy(): void;
}

/**
 * What a bridge needs from the stack to write to its host socket cheaply: the writes of one burst
 * of VM frames batched, and the frames' bytes written as views, not copies, while that is safe.
 */
export interface HostWriteBatching {
  /** Enlists `bridge` for the current burst (burstEnded() runs at its end); false outside a burst. */
  enlist(bridge: HostSocketBridge): boolean;
  /**
   * A loan on the transport buffer the burst's frames are views of (call it once the views are
   * no longer needed), or undefined when none can be had: copy then.
   */
  borrowInput(): (() => void) | undefined;
}

interface InputLoan {
  release(): void;
  /** View writes whose callback has not run. */
  pending: number;
  written(): void;
}

/**
 * Couples a host socket with a guest TCP connection: guest window ↔ socket pause/resume,
 * FIN ↔ end() in each direction independently, RST ↔ resetAndDestroy()/error.
 *
 * Guest → host bytes arrive as views of the transport's read buffer, which is read into again
 * after the burst. Within a burst the socket is corked, and at its end the kernel usually takes
 * everything; if it does not, the views still queued in the socket hold a loan on that buffer until
 * written. A socket that already has a backlog when a burst starts gets copies instead, so a host
 * peer that stops reading pins no transport buffer, only its own bytes (bounded by the TCP window).
 */
export class HostSocketBridge implements TcpApplication {
  conn: TcpConnection | undefined;
  private paused = false;
  private closed = false;
  /** Enlisted in the current burst (socket corked). */
  private enlisted = false;
  /** This burst's deliveries are written as copies. */
  private copying = true;
  /** The loan held for views written to the socket whose writes may not have completed. */
  private loan: InputLoan | undefined;

  constructor(
    private readonly socket: net.Socket,
    private readonly batching?: HostWriteBatching,
    private readonly guard: (fn: () => void) => void = (fn) => fn(),
  ) {}

  /** Starts relaying host → guest once the connection object exists. */
  attach(conn: TcpConnection): void {
    this.conn = conn;
    const s = this.socket;
    const g = this.guard;
    s.on("data", (d: Buffer) =>
      g(() => {
        if (!conn.send(d)) {
          this.paused = true;
          s.pause();
        }
      }),
    );
    s.on("end", () => g(() => conn.end()));
    s.on("drain", () => g(() => conn.appDrained()));
    s.on("error", () =>
      g(() => {
        // ECONNRESET and friends: the server is gone, tell the guest with RST.
        if (!conn.isClosed) conn.abort("aborted");
      }),
    );
    s.on("close", () =>
      g(() => {
        // Destroyed: libuv drops the queued writes, so their views no longer need the buffer.
        this.returnLoan();
        if (!conn.isClosed && !this.closed) {
          // Closed without an error while the guest side is still open (e.g. destroyed by us).
          if (s.readableEnded && s.writableFinished) return;
          conn.abort("aborted");
        }
      }),
    );
  }

  deliver(data: Buffer): void {
    const s = this.socket;
    if (s.destroyed) return;
    if (!this.enlisted && this.batching?.enlist(this)) {
      this.enlisted = true;
      s.cork();
      this.copying = true;
      if (s.writableLength === 0) {
        // Nothing of an earlier burst is queued, so an earlier loan is no longer needed.
        this.returnLoan();
        const release = this.batching.borrowInput();
        if (release) this.loan = this.newLoan(release);
        this.copying = release === undefined;
      }
    }
    if (!this.enlisted || this.copying) {
      // Outside a burst (not a frame's bytes, but copying costs little there) or with a backlog.
      s.write(Buffer.from(data));
      return;
    }
    const loan = this.loan!;
    loan.pending++;
    s.write(data, loan.written);
  }

  /** The burst ended: the batched writes go to the kernel; the loan is returned unless views remain queued. */
  burstEnded(): void {
    if (!this.enlisted) return;
    this.enlisted = false;
    const s = this.socket;
    s.uncork();
    if (this.loan && (s.destroyed || s.writableLength === 0 || this.loan.pending === 0)) this.returnLoan();
  }

  private newLoan(release: () => void): InputLoan {
    const loan: InputLoan = {
      release,
      pending: 0,
      // Write callbacks run in order; the last one means no view of this loan is queued any more.
      written: () => {
        if (--loan.pending === 0 && this.loan === loan && !this.enlisted) this.returnLoan();
      },
    };
    return loan;
  }

  private returnLoan(): void {
    const loan = this.loan;
    this.loan = undefined;
    loan?.release();
  }

  deliverEnd(): void {
    if (!this.socket.destroyed) this.socket.end();
  }

  buffered(): number {
    return this.socket.writableLength;
  }

  onSendSpace(): void {
    if (this.paused) {
      this.paused = false;
      this.socket.resume();
    }
  }

  onEstablished(): void {
    if (!this.socket.isPaused() || this.paused) return;
    // The stack's send budget is spent: start reading when it has room again (onSendSpace).
    if (this.conn?.sendWouldBlock) this.paused = true;
    else this.socket.resume();
  }

  onClosed(reason: TcpCloseReason): void {
    this.closed = true;
    if (this.socket.destroyed) return;
    if (reason === "reset-by-guest" || reason === "aborted" || reason === "timeout") this.socket.resetAndDestroy();
    else this.socket.destroy();
  }

  destroy(): void {
    this.closed = true;
    this.socket.destroy();
  }
}
