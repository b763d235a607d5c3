import { createWriteStream, statSync, type WriteStream } from "node:fs";
import { rename, rm } from "node:fs/promises";
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
 */
export class RotatingLog {
  private stream: WriteStream;
  private bytes = 0;
  private readonly times: LogTimesWriter;

  constructor(
    private readonly path: string,
    private readonly limitBytes = LOG_ROTATE_BYTES,
  ) {
    this.times = new LogTimesWriter(path);
    this.bytes = statSync(path, { throwIfNoEntry: false })?.size ?? 0;
    this.stream = createWriteStream(path, { flags: "a" });
  }

  async write(chunk: Buffer): Promise<void> {
    const cost = chunk.length + TIMES_BYTES_PER_WRITE;
    if (this.bytes + cost > this.limitBytes) {
      await new Promise<void>((resolve) => this.stream.end(resolve));
      await rm(`${this.path}.1`, { force: true });
      await rename(this.path, `${this.path}.1`).catch(() => {});
      this.times.rotate();
      this.stream = createWriteStream(this.path, { flags: "a" });
      this.bytes = 0;
    }
    this.bytes += cost;
    this.times.record(chunk.length);
    if (!this.stream.write(chunk)) await new Promise<void>((resolve) => this.stream.once("drain", () => resolve()));
  }

  close(): Promise<void> {
    this.times.close();
    return new Promise((resolve) => this.stream.end(resolve));
  }
}
