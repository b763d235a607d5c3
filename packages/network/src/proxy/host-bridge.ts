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
 * Couples a host socket with a guest TCP connection: guest window ↔ socket pause/resume,
 * FIN ↔ end() in each direction independently, RST ↔ resetAndDestroy()/error.
 */
export class HostSocketBridge implements TcpApplication {
  conn: TcpConnection | undefined;
  private paused = false;
  private closed = false;

  /** `cork(socket)` is asked to cork the socket until the current burst of frames ends (it uncorks). */
  constructor(
    private readonly socket: net.Socket,
    private readonly cork?: (socket: net.Socket) => void,
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
    if (this.cork && s.writableCorked === 0) this.cork(s);
    s.write(data);
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
    if (this.socket.isPaused() && !this.paused) this.socket.resume();
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
