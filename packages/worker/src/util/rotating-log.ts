import { createWriteStream, statSync, type WriteStream } from "node:fs";
import { rename, rm } from "node:fs/promises";
import type { Readable } from "node:stream";
import { LogTimesWriter } from "../log-times.js";

const LOG_ROTATE_BYTES = 16 * 1024 * 1024;
/**
 * What one write adds to the `.times` file beside the log (log-times.ts), counted toward the limit with the log's
 * own bytes: a writer of 1-byte chunks must not grow the times file twenty times past the log.
 */
const TIMES_BYTES_PER_WRITE = 32;

/**
 * Appends a stream to a log file, starting a new file (old one → `.1`) past a size limit: the file and its `.1`
 * together hold at most twice the limit, across runs too (the count starts at the size the file already has).
 *
 * Writes run one at a time in call order, rotation included, whatever the caller awaits: a write that started
 * while another rotated used to see the old count, rotate again and open a stream of its own, leaving streams
 * open on renamed and removed files (bytes `du` cannot see, an fd each). The class holds one log stream (and the
 * times file) at a time; the old stream is closed before the new one is opened. A write never rejects: a failed
 * one (the host's disk full) costs its bytes, never the caller, and the next write opens the file again.
 */
export class RotatingLog {
  private stream: WriteStream;
  private bytes = 0;
  private readonly times: LogTimesWriter;
  /** The last queued operation; each write or close starts when it settles. */
  private tail: Promise<void> = Promise.resolve();
  private closed = false;
  /** Bytes of writes queued or under way (for tests and diagnostics). */
  queuedBytes = 0;

  constructor(
    private readonly path: string,
    private readonly limitBytes = LOG_ROTATE_BYTES,
  ) {
    this.times = new LogTimesWriter(path);
    this.bytes = statSync(path, { throwIfNoEntry: false })?.size ?? 0;
    this.stream = this.open();
  }

  /** Queues `chunk` behind every earlier write; resolves once it reached the file (or failed to). */
  write(chunk: Buffer): Promise<void> {
    this.queuedBytes += chunk.length;
    return this.enqueue(() => this.writeNow(chunk).finally(() => (this.queuedBytes -= chunk.length)));
  }

  /** Ends the log after the queued writes; writes queued after it are dropped. */
  close(): Promise<void> {
    return this.enqueue(async () => {
      if (this.closed) return;
      this.closed = true;
      this.times.close();
      await endStream(this.stream);
    });
  }

  /**
   * Appends `source`'s chunks, pausing it while each write settles: a source faster than the disk waits instead of
   * piling chunks up in memory (for the control channel's streams, its credit is not returned meanwhile).
   */
  follow(source: Readable): void {
    source.on("data", (chunk: Buffer) => {
      source.pause();
      void this.write(chunk).finally(() => source.resume());
    });
  }

  private enqueue(operation: () => Promise<void>): Promise<void> {
    const run = this.tail.then(operation).catch(() => {});
    this.tail = run;
    return run;
  }

  private async writeNow(chunk: Buffer): Promise<void> {
    if (this.closed) return;
    const cost = chunk.length + TIMES_BYTES_PER_WRITE;
    if (this.bytes > 0 && this.bytes + cost > this.limitBytes) {
      await endStream(this.stream);
      await rm(`${this.path}.1`, { force: true });
      await rename(this.path, `${this.path}.1`).catch(() => {});
      this.times.rotate();
      this.stream = this.open();
      this.bytes = 0;
    } else if (this.stream.destroyed) {
      // The last write failed (ENOSPC, EIO): the stream destroyed itself and closed its fd.
      this.stream = this.open();
    }
    this.bytes += cost;
    this.times.record(chunk.length);
    // Settles once the bytes are handed to the kernel: nothing waits in the stream's buffer behind the caller.
    await new Promise<void>((resolve) => this.stream.write(chunk, () => resolve()));
  }

  private open(): WriteStream {
    const stream = createWriteStream(this.path, { flags: "a" });
    // Reported through the write's callback; an 'error' event without a listener would end the supervisor.
    stream.on("error", () => {});
    return stream;
  }
}

/** Ends `stream` and waits for its fd to be closed (after 'finish' the fd is still open for a moment). */
function endStream(stream: WriteStream): Promise<void> {
  if (stream.closed) return Promise.resolve();
  return new Promise((resolve) => {
    stream.once("close", () => resolve());
    stream.end();
  });
}
