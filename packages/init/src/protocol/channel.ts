// Frame I/O with per-stream flow control over any Duplex (a unix socket to
// QEMU's virtserialport chardev on the host, the /dev/vport device or a test
// socket in the guest). Both sides use this class.
//
// Flow control is credit based, per stream and direction: a sender may have
// INITIAL_WINDOW_BYTES of data in flight; the receiver returns CREDIT once the
// data is consumed (written to the child's stdin, pushed into a Readable that
// was read). A slow consumer on one stream therefore never stalls the others,
// and the transport's own write buffer is respected through 'drain'.

import { EventEmitter } from "node:events";
import type { Duplex } from "node:stream";
import {
  FrameDecoder,
  INITIAL_WINDOW_BYTES,
  MAX_DATA_CHUNK_BYTES,
  ProtocolError,
  encodeFrame,
  type Frame,
} from "./frame.js";
import { frameToMessage, messageToFrame, type Message, type UnknownMessage } from "./messages.js";

interface SendWindow {
  credit: number;
  waiters: Array<() => void>;
}

export interface ControlChannelOptions {
  /** Initial send window per stream in bytes (both peers must agree). */
  initialWindowBytes?: number;
  /** Reading from the peer stops while more than this many bytes wait to be written to it (default 256 KiB). */
  writeHighWaterBytes?: number;
}

/**
 * What may wait in the transport's write buffer before the channel stops reading. Replies the peer's messages cause
 * (PONG to its PING, CREDIT for its data, SIGKILL for a broken stream) are written whether or not the peer reads:
 * without this bound a peer that writes and never reads makes the host queue without limit (security review 2,
 * s14 #3: 256 MiB of PINGs queued 256 MiB of PONGs, +6 GiB RSS). Honest traffic stays far below: data is
 * credit-limited and waits for 'drain'; control messages are tiny, and init never stops reading (its writes
 * never block, static/channel.ts).
 */
export const WRITE_HIGH_WATER_BYTES = 256 * 1024;

export interface ControlChannelEvents {
  message: [Message];
  unknown: [UnknownMessage];
  /** A known frame type with a malformed body; the byte stream stays usable. */
  invalid: [{ stream: number; error: Error }];
  error: [Error];
  close: [];
}

export class ChannelClosedError extends Error {
  readonly code = "ChannelClosed";
  constructor() {
    super("control channel closed");
    this.name = "ChannelClosedError";
  }
}

export class ControlChannel extends EventEmitter<ControlChannelEvents> {
  private readonly decoder = new FrameDecoder();
  private readonly windows = new Map<number, SendWindow>();
  private readonly initialWindow: number;
  private drainWaiters: Array<() => void> = [];
  private writable = true;
  private closedFlag = false;
  private readonly writeHighWater: number;
  /** Reading is paused until the write buffer drains (see WRITE_HIGH_WATER_BYTES). */
  private readPaused = false;

  constructor(
    private readonly io: Duplex,
    options: ControlChannelOptions = {},
  ) {
    super();
    this.initialWindow = options.initialWindowBytes ?? INITIAL_WINDOW_BYTES;
    this.writeHighWater = options.writeHighWaterBytes ?? WRITE_HIGH_WATER_BYTES;
    io.on("data", (chunk: Buffer) => {
      this.onData(chunk);
      this.pauseReadingIfBacklogged();
    });
    io.on("drain", () => {
      this.writable = true;
      if (this.readPaused) {
        this.readPaused = false;
        io.resume();
      }
      const waiters = this.drainWaiters;
      this.drainWaiters = [];
      for (const w of waiters) w();
    });
    io.on("error", (err) => this.emit("error", err));
    io.on("close", () => this.markClosed());
    io.on("end", () => this.markClosed());
  }

  get closed(): boolean {
    return this.closedFlag;
  }

  /** What each stream's sender may have in flight before it needs CREDIT, in both directions. */
  get initialWindowBytes(): number {
    return this.initialWindow;
  }

  /** How many streams have a send window (sendData made it; closeStream ends it). */
  get sendWindows(): number {
    return this.windows.size;
  }

  /** True while reading from the peer is paused because it does not read what is written to it. */
  get readingPaused(): boolean {
    return this.readPaused;
  }

  /**
   * The closed bound on what a peer that does not read can make us queue: stop reading (the peer's writes then
   * block on the transport) until the write buffer drains. What one read chunk causes is written in full, so the
   * queue stays below the high-water mark plus the replies to one chunk (64 KiB of frames).
   */
  private pauseReadingIfBacklogged(): void {
    if (this.readPaused || this.closedFlag || this.io.writableLength <= this.writeHighWater) return;
    // Only a transport that will emit 'drain' can resume us (its own high-water mark is below ours).
    if (!this.io.writableNeedDrain) return;
    this.readPaused = true;
    this.writable = false;
    this.io.pause();
  }

  /** Send a control message (not subject to credit). Returns false once closed. */
  send(message: Message): boolean {
    if (this.closedFlag) return false;
    if (this.io.write(encodeFrame(messageToFrame(message))) === false) this.writable = false;
    return true;
  }

  /**
   * Send bytes as STDIN/STDOUT/STDERR on a stream, waiting for credit and for
   * the transport to drain. Resolves once every byte is handed to the transport.
   * Callers must not run two sendData calls for the same stream and type at once.
   */
  async sendData(stream: number, type: "STDIN" | "STDOUT" | "STDERR", data: Uint8Array): Promise<void> {
    let offset = 0;
    const window = this.window(stream);
    while (offset < data.byteLength) {
      if (this.closedFlag || window.credit === -Infinity) throw new ChannelClosedError();
      if (window.credit <= 0) {
        await new Promise<void>((resolve) => window.waiters.push(resolve));
        continue;
      }
      if (!this.writable) {
        await new Promise<void>((resolve) => this.drainWaiters.push(resolve));
        continue;
      }
      const size = Math.min(data.byteLength - offset, MAX_DATA_CHUNK_BYTES, window.credit);
      window.credit -= size;
      this.send({ type, stream, data: data.subarray(offset, offset + size) });
      offset += size;
    }
  }

  /** Return credit to the peer after consuming `bytes` of its data on `stream`. */
  grant(stream: number, bytes: number): void {
    if (bytes > 0) this.send({ type: "CREDIT", stream, bytes });
  }

  /** Forget a stream's send window; pending sendData calls fail. */
  closeStream(stream: number): void {
    const window = this.windows.get(stream);
    this.windows.delete(stream);
    if (window) {
      window.credit = -Infinity;
      for (const w of window.waiters) w();
    }
  }

  close(): void {
    if (!this.closedFlag) this.io.end();
    this.markClosed();
  }

  private window(stream: number): SendWindow {
    let window = this.windows.get(stream);
    if (!window) {
      window = { credit: this.initialWindow, waiters: [] };
      this.windows.set(stream, window);
    }
    return window;
  }

  private onData(chunk: Buffer): void {
    let frames: Frame[];
    try {
      frames = this.decoder.push(chunk);
    } catch (err) {
      // A framing error leaves the byte stream unusable: report and close.
      this.emit("error", err instanceof ProtocolError ? err : new ProtocolError(String(err), { cause: err }));
      this.close();
      return;
    }
    for (const frame of frames) {
      let message: Message | UnknownMessage;
      try {
        message = frameToMessage(frame);
      } catch (err) {
        this.emit("invalid", { stream: frame.stream, error: err as Error });
        continue;
      }
      if (message.type === "UNKNOWN") {
        this.emit("unknown", message);
      } else if (message.type === "CREDIT") {
        // Credit only for a stream this side sends on (sendData made its window). A CREDIT for any other stream
        // is dropped: it used to make a window for its stream id, kept until the channel closed, and a guest
        // holding init's port sent one per stream id (13 bytes each, 2^32 ids): 2 million took 194 MiB of the
        // supervisor's heap, without bound (review rev6g). An honest peer grants only for data it received, so
        // the window exists; one for a stream already closed (closeStream) has nothing left to send.
        const window = this.windows.get(message.stream);
        if (!window) continue;
        window.credit += message.bytes;
        const waiters = window.waiters;
        window.waiters = [];
        for (const w of waiters) w();
      } else {
        this.emit("message", message);
      }
    }
  }

  private markClosed(): void {
    if (this.closedFlag) return;
    this.closedFlag = true;
    for (const window of this.windows.values()) {
      const waiters = window.waiters;
      window.waiters = [];
      for (const w of waiters) w();
    }
    const drains = this.drainWaiters;
    this.drainWaiters = [];
    for (const w of drains) w();
    this.emit("close");
  }
}
