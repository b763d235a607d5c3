// The control channel on QuickJS's event loop: frames in through a read
// handler, out with the protocol's per-stream credit; and the pump that moves a
// pipe's or pty's bytes onto a stream.
import * as os from "os";
import { encodeFrame, FrameDecoder, INITIAL_WINDOW_BYTES, MAX_DATA_CHUNK_BYTES } from "../protocol/frame.js";
import { frameToMessage, messageToFrame, type Message } from "../protocol/messages.js";
import * as sys from "iii:sys";
import { writeAll } from "./sys.js";

const EAGAIN = 11;
const EINTR = 4;

function line(message: string): void {
  writeAll(2, `iii-init: ${message}\n`);
}

/**
 * The control channel over one fd: frames in via the event loop, out with credit-based flow control. Writes never
 * block: a host that stops reading must not stall init (reaping, signal forwarding, the workload's pumps), so what
 * the fd does not take is queued and written from a write handler. The queue is bounded by the protocol: data
 * frames spend per-stream credit, and the rest are small control messages.
 */
export class Channel {
  private readonly decoder = new FrameDecoder();
  private readonly outQueue: Uint8Array[] = [];
  /** Bytes waiting in outQueue (for tests and diagnostics). */
  queuedBytes = 0;
  private readonly buf = new ArrayBuffer(65536);
  private readonly credit = new Map<number, number>();
  private readonly creditWaiters = new Map<number, Array<() => void>>();
  closed = false;
  onMessage: (m: Message) => void = () => {};
  onClose: () => void = () => {};

  constructor(readonly fd: number) {
    sys.setNonBlock(fd, 1);
    os.setReadHandler(fd, () => this.readable());
  }

  private readable(): void {
    const n = os.read(this.fd, this.buf, 0, this.buf.byteLength);
    if (n <= 0) {
      if (n < 0 && (-n === 11 || -n === 4)) return;
      this.close();
      return;
    }
    let frames;
    try {
      frames = this.decoder.push(new Uint8Array(this.buf.slice(0, n)));
    } catch (err) {
      line(`control channel: ${(err as Error).message}`);
      this.close();
      return;
    }
    for (const f of frames) {
      let m;
      try {
        m = frameToMessage(f);
      } catch (err) {
        this.send({ type: "ERROR", stream: f.stream, code: "BAD_MESSAGE", message: (err as Error).message });
        continue;
      }
      if (m.type === "UNKNOWN") continue;
      if (m.type === "CREDIT") {
        this.credit.set(m.stream, this.window(m.stream) + m.bytes);
        for (const w of this.creditWaiters.get(m.stream)?.splice(0) ?? []) w();
        continue;
      }
      this.onMessage(m);
    }
  }

  private window(stream: number): number {
    return this.credit.get(stream) ?? INITIAL_WINDOW_BYTES;
  }

  send(m: Message): boolean {
    if (this.closed) return false;
    const bytes = encodeFrame(messageToFrame(m));
    if (this.outQueue.length > 0) {
      this.enqueue(bytes);
      return true;
    }
    const n = this.writeSome(bytes);
    if (n < 0) return false;
    if (n < bytes.byteLength) {
      this.enqueue(bytes.subarray(n));
      os.setWriteHandler(this.fd, () => this.flush());
    }
    return true;
  }

  private enqueue(bytes: Uint8Array): void {
    this.outQueue.push(bytes);
    this.queuedBytes += bytes.byteLength;
  }

  /** Writes what the fd takes now: the count written, or -1 after closing the channel on a write error. */
  private writeSome(bytes: Uint8Array): number {
    let off = 0;
    while (off < bytes.byteLength) {
      const n = os.write(this.fd, bytes.buffer as ArrayBuffer, bytes.byteOffset + off, bytes.byteLength - off);
      if (n >= 0) off += n;
      else if (-n === EINTR) continue;
      else if (-n === EAGAIN) break;
      else {
        this.close();
        return -1;
      }
    }
    return off;
  }

  private flush(): void {
    while (this.outQueue.length > 0) {
      const head = this.outQueue[0]!;
      const n = this.writeSome(head);
      if (n < 0) return;
      this.queuedBytes -= n;
      if (n < head.byteLength) {
        this.outQueue[0] = head.subarray(n);
        return;
      }
      this.outQueue.shift();
    }
    os.setWriteHandler(this.fd, null);
  }

  /** Before init powers off: waits (bounded) for the queued frames to leave, so the host still sees the last ones. */
  drain(timeoutMs: number): void {
    const deadline = os.now() + timeoutMs;
    while (this.outQueue.length > 0 && !this.closed && os.now() < deadline) {
      this.flush();
      if (this.outQueue.length > 0) os.sleep(1);
    }
  }

  /** Bytes this stream may send now; `wake` is called once credit arrives when it is 0. */
  available(stream: number, wake: () => void): number {
    const w = this.window(stream);
    if (w <= 0) {
      const list = this.creditWaiters.get(stream) ?? [];
      list.push(wake);
      this.creditWaiters.set(stream, list);
    }
    return Math.max(0, w);
  }

  sendData(stream: number, type: "STDOUT" | "STDERR", data: Uint8Array): void {
    for (let off = 0; off < data.byteLength; off += MAX_DATA_CHUNK_BYTES) {
      const chunk = data.subarray(off, Math.min(data.byteLength, off + MAX_DATA_CHUNK_BYTES));
      this.credit.set(stream, this.window(stream) - chunk.byteLength);
      this.send({ type, stream, data: chunk });
    }
  }

  /** Return credit for `bytes` of the peer's data consumed on `stream`. */
  grant(stream: number, bytes: number): void {
    if (bytes > 0) this.send({ type: "CREDIT", stream, bytes });
  }

  /** Forget a finished stream's send window. */
  closeStream(stream: number): void {
    this.credit.delete(stream);
    for (const w of this.creditWaiters.get(stream)?.splice(0) ?? []) w();
    this.creditWaiters.delete(stream);
  }

  close(): void {
    if (this.closed) return;
    this.closed = true;
    os.setReadHandler(this.fd, null);
    if (this.outQueue.length > 0) os.setWriteHandler(this.fd, null);
    this.outQueue.length = 0;
    this.queuedBytes = 0;
    for (const list of this.creditWaiters.values()) for (const w of list.splice(0)) w();
    this.onClose();
  }
}

/** Pumps a pipe's bytes to the channel (stream 0) or to init's own fd. */
export class Pump {
  private readonly buf = new ArrayBuffer(MAX_DATA_CHUNK_BYTES);
  done = false;
  private paused = false;
  onEnd: () => void = () => {};

  constructor(
    private readonly fd: number,
    private readonly stream: number,
    private readonly type: "STDOUT" | "STDERR",
    private readonly channel: Channel | null,
    private readonly tty = false,
  ) {
    this.resume();
  }

  private resume(): void {
    this.paused = false;
    os.setReadHandler(this.fd, () => this.readable());
  }

  private readable(): void {
    let room = MAX_DATA_CHUNK_BYTES;
    if (this.channel && !this.channel.closed) {
      room = this.channel.available(this.stream, () => {
        if (!this.done) this.resume();
      });
      if (room === 0) {
        this.paused = true;
        os.setReadHandler(this.fd, null);
        return;
      }
    }
    const n = os.read(this.fd, this.buf, 0, Math.min(room, this.buf.byteLength));
    if (n <= 0) {
      // EIO on a pty master: every slave fd closed, the normal end of a tty session.
      if (n < 0 && (-n === 11 || -n === 4)) return;
      if (n < 0 && !(this.tty && -n === 5)) line(`read fd ${this.fd}: errno ${-n}`);
      this.end();
      return;
    }
    const data = new Uint8Array(this.buf.slice(0, n));
    if (this.channel && !this.channel.closed) this.channel.sendData(this.stream, this.type, data);
    else if (this.stream === 0) writeAll(this.type === "STDOUT" ? 1 : 2, data);
  }

  end(): void {
    if (this.done) return;
    this.done = true;
    if (!this.paused) os.setReadHandler(this.fd, null);
    os.close(this.fd);
    this.onEnd();
  }
}


/** Resolves once every pump reached EOF, or after `ms` (a background process may hold a pipe open). */
export function pumpsDone(pumps: readonly Pump[], ms: number): Promise<void> {
  return new Promise((resolve) => {
    let left = pumps.filter((p) => !p.done).length;
    if (left === 0) {
      resolve();
      return;
    }
    const timer = os.setTimeout(resolve, ms);
    for (const p of pumps) {
      if (p.done) continue;
      const prev = p.onEnd;
      p.onEnd = () => {
        prev();
        if (--left === 0) {
          os.clearTimeout(timer);
          resolve();
        }
      };
    }
  });
}
