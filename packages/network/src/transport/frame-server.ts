import { existsSync, unlinkSync } from "node:fs";
import net from "node:net";
import { NetworkError } from "../errors.js";
import { FrameDecoder, encodeFrameLength } from "./frame-decoder.js";

export interface FrameServerHooks {
  onFrame(frame: Buffer): void;
  /** Called after each chunk read from the socket (all its frames processed). */
  onBurstEnd(): void;
  log(line: string): void;
  onConnect?(): void;
  onDisconnect?(): void;
  /** The VM connection's write buffer emptied (after having been above the high-water mark). */
  onDrain?(): void;
}

/** Above this many unsent bytes toward the VM, frames are dropped (TCP retransmits; UDP is lossy anyway). */
const MAX_PENDING_WRITE_BYTES = 32 * 1024 * 1024;

/**
 * Unix-socket server for one VM's frame stream. A new connection replaces the old one, so a
 * restarted VMM can reconnect; a malformed length closes the connection with a log line.
 */
export class FrameServer {
  private server: net.Server | undefined;
  private conn: net.Socket | undefined;
  private corked = false;
  private readonly hooks: FrameServerHooks;
  private readonly maxFrameBytes: number;
  private socketPath: string | undefined;
  droppedWrites = 0;

  constructor(maxFrameBytes: number, hooks: FrameServerHooks) {
    this.maxFrameBytes = maxFrameBytes;
    this.hooks = hooks;
  }

  async listen(socketPath: string): Promise<void> {
    if (this.server) throw new NetworkError("AlreadyListening", `already listening on ${this.socketPath}`);
    if (existsSync(socketPath)) {
      // A stale socket from a crashed run; refuse if something still answers on it.
      const alive = await new Promise<boolean>((resolve) => {
        const probe = net.connect(socketPath);
        probe.once("connect", () => {
          probe.destroy();
          resolve(true);
        });
        probe.once("error", () => resolve(false));
      });
      if (alive) throw new NetworkError("AlreadyListening", `${socketPath} is in use by another process`);
      unlinkSync(socketPath);
    }
    const server = net.createServer((sock) => this.accept(sock));
    this.server = server;
    this.socketPath = socketPath;
    await new Promise<void>((resolve, reject) => {
      server.once("error", (err) => reject(new NetworkError("TransportError", `cannot listen on ${socketPath}`, { cause: err })));
      server.listen(socketPath, () => resolve());
    });
    server.on("error", (err) => this.hooks.log(`transport: server error: ${err.message}`));
  }

  get connected(): boolean {
    return this.conn !== undefined;
  }

  private accept(sock: net.Socket): void {
    if (this.conn) {
      this.hooks.log("transport: new VM connection replaces the previous one");
      this.conn.destroy();
    }
    this.conn = sock;
    this.corked = false;
    const decoder = new FrameDecoder(this.maxFrameBytes);
    sock.on("data", (chunk: Buffer) => {
      const err = decoder.push(chunk, this.hooks.onFrame);
      this.hooks.onBurstEnd();
      if (err) {
        this.hooks.log(`transport: ${err}; closing the VM connection`);
        sock.destroy();
      }
    });
    sock.on("error", (err) => this.hooks.log(`transport: connection error: ${err.message}`));
    sock.on("drain", () => this.hooks.onDrain?.());
    sock.on("close", () => {
      if (this.conn === sock) {
        this.conn = undefined;
        this.hooks.onDisconnect?.();
      }
    });
    this.hooks.onConnect?.();
  }

  /** Queues one Ethernet frame to the VM. Returns false if it was dropped. */
  send(frame: Uint8Array): boolean {
    const c = this.writable();
    if (!c) return false;
    c.write(encodeFrameLength(frame.length));
    c.write(frame);
    return true;
  }

  /** Like send(), for a buffer whose first 4 bytes already hold the big-endian frame length. */
  sendPrefixed(prefixed: Uint8Array): boolean {
    const c = this.writable();
    if (!c) return false;
    c.write(prefixed);
    return true;
  }

  /** The VM connection, corked until the end of this tick so frames leave in one writev. */
  private writable(): net.Socket | undefined {
    const c = this.conn;
    if (!c || c.destroyed) return undefined;
    if (c.writableLength > MAX_PENDING_WRITE_BYTES) {
      this.droppedWrites++;
      return undefined;
    }
    if (!this.corked) {
      this.corked = true;
      c.cork();
      process.nextTick(() => {
        this.corked = false;
        c.uncork();
      });
    }
    return c;
  }

  get pendingWriteBytes(): number {
    return this.conn?.writableLength ?? 0;
  }

  async close(): Promise<void> {
    this.conn?.destroy();
    this.conn = undefined;
    const server = this.server;
    this.server = undefined;
    if (server) {
      await new Promise<void>((resolve) => server.close(() => resolve()));
    }
    if (this.socketPath && existsSync(this.socketPath)) {
      try {
        unlinkSync(this.socketPath);
      } catch {
        // already gone
      }
    }
  }
}
