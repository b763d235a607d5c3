import { existsSync, unlinkSync } from "node:fs";
import net from "node:net";
import { NetworkError } from "../errors.js";
import type { FrameLink } from "./frame-link.js";
import { FrameDecoder } from "./frame-decoder.js";
import { SIMD_SLAB_BYTES, isSimdSlab, returnSimdSlab, takeSimdSlab } from "../wire/simd-memory.js";

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
 * Frames toward the VM are built in place in slabs of this size (a bigger frame gets its own),
 * taken from the SIMD memory when it has one free (checksummed there, see wire/simd-memory.ts).
 */
const SLAB_BYTES = SIMD_SLAB_BYTES;
/** Retired slabs kept for reuse once the socket has taken all their bytes. */
const SLAB_POOL = 8;

/** A slab and how many of its regions the socket still holds (written, callback not yet run). */
interface Slab {
  buf: Buffer;
  inSocket: number;
  retired: boolean;
}

/** A slab from the SIMD memory, or a plain buffer when it has none free. */
function newSlab(): Buffer {
  return takeSimdSlab() ?? Buffer.allocUnsafe(SLAB_BYTES);
}

/**
 * Unix-socket server for one VM's frame stream. A new connection replaces the old one, so a
 * restarted VMM can reconnect; a malformed length closes the connection with a log line.
 *
 * Output: frames are reserved in a slab (length prefix filled in), built in place by the caller,
 * and committed; everything committed during one event-loop turn leaves in a single socket write. No buffer
 * is allocated per frame, and a slab region handed to the socket is not written again until the socket
 * reports it written (then the retired slab returns to a small pool).
 */
export class FrameServer implements FrameLink {
  private server: net.Server | undefined;
  private conn: net.Socket | undefined;
  private readonly hooks: FrameServerHooks;
  private readonly maxFrameBytes: number;
  private socketPath: string | undefined;
  private slab: Slab = { buf: newSlab(), inSocket: 0, retired: false };
  /**
   * Slabs whose bytes the kernel has taken, reused instead of allocating: a fresh 1 MiB slab costs
   * its page faults on first touch (paid inside the copy into the frame) and GC pressure.
   */
  private readonly pool: Buffer[] = [];
  /** Committed bytes of the slab not yet handed to the socket: [start, used). */
  private start = 0;
  private used = 0;
  /** The frame handed out by the last reserve() when it is backed by the slab. */
  private reserved: Buffer | undefined;
  private flushScheduled = false;
  private closed = false;
  droppedWrites = 0;
  /** Slabs allocated so far (the rest of the output reused pooled ones). */
  slabsAllocated = 1;

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
    // Frames batched for the previous connection are not sent to the new one.
    this.start = this.used;
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
        this.start = this.used;
        this.hooks.onDisconnect?.();
      }
    });
    this.hooks.onConnect?.();
  }

  /**
   * A buffer for one frame of `length` bytes toward the VM, to fill then pass to commit(). When
   * the VM link cannot take it (no VM, or too far behind) the buffer is a scratch one and
   * commit() reports the drop.
   */
  reserve(length: number): Buffer {
    this.reserved = undefined;
    if (!this.writable()) return Buffer.allocUnsafe(length);
    if (this.used + 4 + length > this.slab.buf.length) {
      this.flush();
      this.retire(this.slab);
      const size = Math.max(SLAB_BYTES, 4 + length);
      const buf = size === SLAB_BYTES ? this.pool.pop() : undefined;
      if (!buf) this.slabsAllocated++;
      this.slab = { buf: buf ?? (size === SLAB_BYTES ? newSlab() : Buffer.allocUnsafe(size)), inSocket: 0, retired: false };
      this.start = 0;
      this.used = 0;
    }
    const o = this.used;
    const slab = this.slab.buf;
    slab.writeUInt32BE(length, o);
    const frame = slab.subarray(o + 4, o + 4 + length);
    this.reserved = frame;
    return frame;
  }

  /** Queues the frame returned by the last reserve(). Returns false if it was dropped. */
  commit(frame: Buffer): boolean {
    if (frame !== this.reserved) {
      this.droppedWrites++;
      return false;
    }
    this.reserved = undefined;
    this.used += 4 + frame.length;
    if (!this.flushScheduled) {
      this.flushScheduled = true;
      // After the poll phase: frames produced by all the I/O callbacks of this loop turn
      // (guest frames, host sockets, DNS answers) leave together.
      setImmediate(this.flushTick);
    }
    return true;
  }

  /** Queues one prebuilt Ethernet frame to the VM (copied into the batch). Returns false if it was dropped. */
  send(frame: Uint8Array): boolean {
    const f = this.reserve(frame.length);
    f.set(frame);
    return this.commit(f);
  }

  private readonly flushTick = (): void => {
    this.flushScheduled = false;
    this.flush();
  };

  /** Hands the committed frames to the socket in one write. */
  private flush(): void {
    if (this.used > this.start) {
      const c = this.conn;
      if (c && !c.destroyed) {
        const slab = this.slab;
        slab.inSocket++;
        c.write(slab.buf.subarray(this.start, this.used), () => this.written(slab));
      }
      this.start = this.used;
    }
  }

  /** The socket is done with one region of `slab` (written to the kernel, or failed). */
  private written(slab: Slab): void {
    slab.inSocket--;
    if (slab.retired && slab.inSocket === 0) this.recycle(slab);
  }

  /** No more frames go into `slab`; it is reused once the socket holds none of it. */
  private retire(slab: Slab): void {
    slab.retired = true;
    if (slab.inSocket === 0) this.recycle(slab);
  }

  private recycle(slab: Slab): void {
    if (!this.closed && slab.buf.length === SLAB_BYTES && this.pool.length < SLAB_POOL) this.pool.push(slab.buf);
    // A SIMD slab not kept here goes back to the process-wide free list for another stack.
    else if (isSimdSlab(slab.buf)) returnSimdSlab(slab.buf);
  }

  private writable(): boolean {
    const c = this.conn;
    if (!c || c.destroyed) return false;
    return c.writableLength + (this.used - this.start) <= MAX_PENDING_WRITE_BYTES;
  }

  get pendingWriteBytes(): number {
    return (this.conn?.writableLength ?? 0) + (this.used - this.start);
  }

  async close(): Promise<void> {
    this.conn?.destroy();
    this.conn = undefined;
    if (!this.closed) {
      this.closed = true;
      // SIMD slabs go back once the socket holds none of their bytes (written() recycles the rest).
      for (const buf of this.pool.splice(0)) returnSimdSlab(buf);
      this.retire(this.slab);
      // No reference to a slab that is back on the shared free list (another stack's frames may be built there).
      this.slab = { buf: Buffer.alloc(0), inSocket: 0, retired: true };
      this.start = 0;
      this.used = 0;
      this.reserved = undefined;
    }
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
