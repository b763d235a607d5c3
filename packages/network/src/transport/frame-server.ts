import { existsSync, unlinkSync } from "node:fs";
import net from "node:net";
import { NetworkError } from "../errors.js";
import type { FrameLink } from "./frame-link.js";
import { FrameDecoder } from "./frame-decoder.js";
import { SIMD_SLAB_BYTES, isSimdSlab, returnSimdSlab, takeSimdSlab } from "../wire/simd-memory.js";

export interface FrameServerHooks {
  /**
   * One frame from the VM: a view valid only during the call (the transport reads into a buffer
   * it reuses). Whoever keeps bytes past the call copies them, or holds a loan (borrowInput()).
   */
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

/**
 * Reads from the VM land in a reused buffer this big: a 64 KiB guest frame rarely straddles two
 * reads, and nothing is allocated per read (Node's default allocates a fresh 64 KiB chunk each time).
 */
const READ_BUFFER_BYTES = 256 * 1024;
/**
 * Loans on read buffers out at once (host sockets still holding views of their bytes). Past this
 * borrowers copy, so a guest keeping many host sockets stuck pins at most this many buffers.
 */
const MAX_INPUT_LOANS = 16;
/** Lent-out read buffers kept for reuse once returned. */
const SPARE_READ_BUFFERS = 2;

/** A read buffer and the loans on it; it is read into again only when none is out. */
interface ReadBuffer {
  buf: Buffer;
  loans: number;
  retired: boolean;
}

/** A slab and how many of its regions the socket still holds (written, callback not yet run). */
interface Slab {
  buf: Buffer;
  inSocket: number;
  retired: boolean;
}

const NO_LOAN = (): void => {};

export interface TransportInputStats {
  /** The VM connection reads into a reused buffer (false: Node's own fresh chunk per read). */
  readsIntoReusedBuffer: boolean;
  /** Read buffers set aside because views of them were still queued in host sockets. */
  readBuffersLent: number;
  /** Loans on read buffers out now. */
  loansOut: number;
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
  /** The buffer the next read goes into, and lent-out ones returned for reuse. */
  private readBuf: ReadBuffer = { buf: Buffer.allocUnsafe(READ_BUFFER_BYTES), loans: 0, retired: false };
  private readonly spareReadBufs: Buffer[] = [];
  private loansOut = 0;
  /** Read buffers set aside because a loan on them outlived the read's handling. */
  readBuffersLent = 0;
  /**
   * Whether the VM connection reads into the reused buffer. False only if Node's socket internals
   * ever stop allowing it (see adopt()); frames then come in fresh chunks and no loan is needed.
   */
  readsIntoReusedBuffer = false;
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
    // Paused on accept: adopt() moves the connection into a socket reading into the reused buffer.
    const server = net.createServer({ pauseOnConnect: true }, (sock) => this.accept(sock));
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

  private accept(raw: net.Socket): void {
    if (this.conn) {
      this.hooks.log("transport: new VM connection replaces the previous one");
      this.conn.destroy();
    }
    const decoder = new FrameDecoder(this.maxFrameBytes);
    let sock: net.Socket;
    const onChunk = (chunk: Buffer): void => {
      const err = decoder.push(chunk, this.hooks.onFrame);
      this.hooks.onBurstEnd();
      if (err) {
        this.hooks.log(`transport: ${err}; closing the VM connection`);
        sock.destroy();
      }
    };
    sock = this.adopt(raw, onChunk) ?? raw;
    this.readsIntoReusedBuffer = sock !== raw;
    if (sock === raw) {
      sock.on("data", onChunk);
      sock.resume();
    }
    this.conn = sock;
    // Frames batched for the previous connection are not sent to the new one.
    this.start = this.used;
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
   * Node offers `onread` (reads into a caller's buffer) only to sockets it constructs with it, not to
   * a server's connections: the accepted handle moves into such a socket, and the accepted socket,
   * now without a handle, is destroyed (which keeps the server's connection count right). Returns
   * undefined if the handle is not the kind expected; the caller then reads the usual way.
   */
  private adopt(raw: net.Socket, onChunk: (chunk: Buffer) => void): net.Socket | undefined {
    const holder = raw as unknown as { _handle?: { readStart?: unknown } | null };
    const handle = holder._handle;
    if (!handle || typeof handle.readStart !== "function") return undefined;
    holder._handle = null;
    raw.destroy();
    const options = {
      handle,
      readable: true,
      writable: true,
      onread: {
        // Node calls this for the first read and again after each read has been handled.
        buffer: () => this.nextReadBuffer(),
        callback: (n: number, buf: Uint8Array) => {
          onChunk((buf as Buffer).subarray(0, n));
        },
      },
    };
    return new net.Socket(options as unknown as net.SocketConstructorOpts);
  }

  /** The buffer for the next read: the current one, unless a loan on it is still out. */
  private nextReadBuffer(): Buffer {
    const rb = this.readBuf;
    if (rb.loans > 0) {
      rb.retired = true;
      this.readBuffersLent++;
      this.readBuf = { buf: this.spareReadBufs.pop() ?? Buffer.allocUnsafe(READ_BUFFER_BYTES), loans: 0, retired: false };
    }
    return this.readBuf.buf;
  }

  /**
   * A loan on the buffer the frames being handled are views of: it is not read into again until
   * the returned function has been called (once the bytes are copied elsewhere, e.g. written to the
   * kernel). Undefined when too many loans are out: copy instead. A no-op loan when reads do not
   * reuse their buffer.
   */
  borrowInput(): (() => void) | undefined {
    if (!this.readsIntoReusedBuffer) return NO_LOAN;
    if (this.loansOut >= MAX_INPUT_LOANS) return undefined;
    const rb = this.readBuf;
    rb.loans++;
    this.loansOut++;
    let returned = false;
    return () => {
      if (returned) return;
      returned = true;
      rb.loans--;
      this.loansOut--;
      if (rb.retired && rb.loans === 0 && this.spareReadBufs.length < SPARE_READ_BUFFERS) this.spareReadBufs.push(rb.buf);
    };
  }

  /** How reads from the VM are buffered, and the loans on those buffers. */
  get inputStats(): TransportInputStats {
    return { readsIntoReusedBuffer: this.readsIntoReusedBuffer, readBuffersLent: this.readBuffersLent, loansOut: this.loansOut };
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
