import { createReadStream } from "node:fs";
import { stat } from "node:fs/promises";
import { StringDecoder } from "node:string_decoder";
import { IiiError } from "../../errors.js";
import { followFile, tailLines } from "../../logs.js";
import { readTimedLines } from "../../log-times.js";
import { workerPaths } from "../../paths.js";
import { getWorker } from "../../workers.js";

export type LogStream = "stdout" | "stderr";

export interface PrintLogsOptions {
  follow: boolean;
  streams: LogStream[];
  tail?: number;
  /** Only lines written at or after this time (epoch ms). */
  sinceMs?: number;
  /** Only lines written before this time (epoch ms); with follow, stop following then. */
  untilMs?: number;
  /** Prefix each line with its write time (RFC 3339, UTC, milliseconds), as `docker logs -t`. */
  timestamps?: boolean;
  env?: NodeJS.ProcessEnv;
  cwd?: string;
}

export function parseTail(text: string): number {
  if (!/^\d+$/.test(text)) throw new IiiError("InvalidOption", `invalid --tail "${text}": expected a whole number of lines`);
  return Number(text);
}

async function sizeOf(path: string): Promise<number> {
  try {
    return (await stat(path)).size;
  } catch {
    return 0;
  }
}

function write(stream: LogStream, chunk: Buffer | string): Promise<void> {
  const out = stream === "stdout" ? process.stdout : process.stderr;
  return new Promise((resolve) => (out.write(chunk) ? resolve() : out.once("drain", resolve)));
}

function stamp(ms: number): string {
  return `${new Date(ms).toISOString()} `;
}

/**
 * Prefixes every line that starts in `chunk` with the time it is seen (follow mode: within one poll of its write).
 * A UTF-8 character split across two chunks is kept whole (decoding each chunk alone showed it as U+FFFD twice).
 */
export class LineStamper {
  private atLineStart = true;
  private readonly decoder = new StringDecoder("utf8");
  apply(chunk: Buffer, ms: number): string {
    let out = "";
    const text = this.decoder.write(chunk);
    if (text === "") return "";
    for (const part of text.split(/(?<=\n)/)) {
      if (this.atLineStart) out += stamp(ms);
      out += part;
      this.atLineStart = part.endsWith("\n");
    }
    return out;
  }
}

async function printOne(path: string, stream: LogStream, options: PrintLogsOptions, signal: AbortSignal): Promise<void> {
  const size = await sizeOf(path);
  const timed = options.sinceMs !== undefined || options.untilMs !== undefined || options.timestamps;
  if (timed) {
    let lines = (await readTimedLines(path)).filter(
      (l) => (options.sinceMs === undefined || l.ms >= options.sinceMs) && (options.untilMs === undefined || l.ms < options.untilMs),
    );
    if (options.tail !== undefined) lines = options.tail === 0 ? [] : lines.slice(-options.tail);
    for (const l of lines) await write(stream, options.timestamps ? Buffer.concat([Buffer.from(stamp(l.ms)), l.line]) : l.line);
  } else if (options.tail !== undefined) {
    await write(stream, await tailLines(path, options.tail));
  } else if (size > 0) {
    for await (const chunk of createReadStream(path, { end: size - 1 })) await write(stream, chunk as Buffer);
  }
  if (!options.follow) return;
  if (options.untilMs !== undefined && Date.now() >= options.untilMs) return;
  const stamper = new LineStamper();
  for await (const chunk of followFile(path, { from: size, signal })) {
    const now = Date.now();
    if (options.untilMs !== undefined && now >= options.untilMs) return;
    await write(stream, options.timestamps ? stamper.apply(chunk, now) : chunk);
  }
}

/** `iii worker logs`: prints (and with follow, keeps printing) the workload's log files. */
export async function printLogs(name: string, options: PrintLogsOptions): Promise<void> {
  await getWorker(name, options.cwd);
  const paths = workerPaths(name, options.env, options.cwd);
  const controller = new AbortController();
  const stop = () => controller.abort();
  process.once("SIGINT", stop);
  process.once("SIGTERM", stop);
  // --until while following: stop at that time even when nothing more is written
  const untilDelayMs = options.untilMs === undefined ? undefined : Math.max(0, options.untilMs - Date.now());
  const until = options.follow && untilDelayMs !== undefined && untilDelayMs < 2 ** 31 - 1 ? setTimeout(stop, untilDelayMs) : undefined;
  try {
    await Promise.all(
      options.streams.map((stream) =>
        printOne(stream === "stdout" ? paths.stdoutLog : paths.stderrLog, stream, options, controller.signal),
      ),
    );
  } finally {
    if (until) clearTimeout(until);
    process.off("SIGINT", stop);
    process.off("SIGTERM", stop);
  }
}
