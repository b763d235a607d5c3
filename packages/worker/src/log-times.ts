import { closeSync, openSync, renameSync, rmSync, statSync, writeSync } from "node:fs";
import { readFile, stat } from "node:fs/promises";
import { IiiError } from "./errors.js";

/**
 * When each byte of a workload log was written: beside `stdout.log`, `stdout.log.times` holds one text line
 * `<byte offset> <epoch ms>` per chunk the supervisor appended, which is what `logs --since/--until/--timestamps`
 * read (the log itself stays the workload's bytes, unchanged). A line's time is that of the chunk its first
 * byte arrived in. Rotated with its log (`.times.1`).
 */
export function logTimesPath(logPath: string): string {
  return `${logPath}.times`;
}

export class LogTimesWriter {
  private fd: number | undefined;
  private offset: number;

  constructor(private readonly logPath: string) {
    this.offset = sizeOf(logPath);
    this.fd = openTimes(logPath);
  }

  /** Call before appending `length` bytes to the log. */
  record(length: number, nowMs: number = Date.now()): void {
    if (length === 0) return;
    if (this.fd !== undefined) {
      try {
        writeSync(this.fd, `${this.offset} ${nowMs}\n`);
      } catch {
        // a full disk costs the times, never the log
      }
    }
    this.offset += length;
  }

  /** The log was renamed to `.1` and a new one begins. */
  rotate(): void {
    this.close();
    try {
      rmSync(`${logTimesPath(this.logPath)}.1`, { force: true });
      renameSync(logTimesPath(this.logPath), `${logTimesPath(this.logPath)}.1`);
    } catch {
      // nothing to rotate
    }
    this.offset = 0;
    this.fd = openTimes(this.logPath);
  }

  close(): void {
    if (this.fd !== undefined) closeSync(this.fd);
    this.fd = undefined;
  }
}

function sizeOf(path: string): number {
  try {
    return statSync(path).size;
  } catch {
    return 0;
  }
}

function openTimes(logPath: string): number | undefined {
  try {
    return openSync(logTimesPath(logPath), "a", 0o600);
  } catch {
    return undefined;
  }
}

export interface TimedLine {
  /** The line's bytes, with its newline when it has one. */
  line: Buffer;
  /** When its first byte was written (epoch ms). */
  ms: number;
}

/**
 * A log file split into lines with their write times. Bytes the times file does not cover (a log written
 * before it existed, or a worker whose logs have no times file: WASM runners write their logs directly) take the
 * first known time after them, else the file's modification time.
 */
export async function readTimedLines(logPath: string): Promise<TimedLine[]> {
  let data: Buffer;
  let mtimeMs: number;
  try {
    data = await readFile(logPath);
    mtimeMs = (await stat(logPath)).mtimeMs;
  } catch {
    return [];
  }
  const entries: { offset: number; ms: number }[] = [];
  try {
    for (const text of (await readFile(logTimesPath(logPath), "utf8")).split("\n")) {
      const match = /^(\d+) (\d+)$/.exec(text);
      if (!match) continue;
      const offset = Number(match[1]);
      if (offset < data.length && (entries.length === 0 || offset >= entries.at(-1)!.offset)) entries.push({ offset, ms: Number(match[2]) });
    }
  } catch {
    // no times: every line gets the fallback
  }
  const lines: TimedLine[] = [];
  let entry = -1;
  for (let start = 0; start < data.length; ) {
    const newline = data.indexOf(10, start);
    const end = newline < 0 ? data.length : newline + 1;
    while (entry + 1 < entries.length && entries[entry + 1]!.offset <= start) entry += 1;
    const ms = entry >= 0 ? entries[entry]!.ms : (entries[0]?.ms ?? mtimeMs);
    lines.push({ line: data.subarray(start, end), ms });
    start = end;
  }
  return lines;
}

const DURATION_UNITS_MS: Record<string, number> = { ns: 1e-6, us: 1e-3, "µs": 1e-3, ms: 1, s: 1000, m: 60_000, h: 3_600_000 };

/**
 * A point in time as docker's `logs --since/--until` take it: an RFC 3339 date-time (`2026-12-05T10:00:00Z`,
 * with an offset, or without a zone: local time), a date (`2026-12-05`), a Unix timestamp (`1733392800`,
 * fractions allowed), or a Go duration before now (`10m`, `1h30m`, `42s`, `1.5h`).
 */
export function parseLogTime(text: string, flag: string, nowMs: number = Date.now()): number {
  const fail = (): never => {
    throw new IiiError(
      "InvalidOption",
      `invalid ${flag} "${text}": expected an RFC 3339 time (2026-12-05T10:00:00Z), a Unix timestamp, or a duration before now (10m, 1h30m)`,
    );
  };
  if (/^(\d+(\.\d+)?(ns|us|µs|ms|s|m|h))+$/.test(text)) {
    let ms = 0;
    for (const [, value, unit] of text.matchAll(/(\d+(?:\.\d+)?)(ns|us|µs|ms|s|m|h)/g)) ms += Number(value) * DURATION_UNITS_MS[unit!]!;
    return nowMs - ms;
  }
  if (/^\d+(\.\d+)?$/.test(text)) return Number(text) * 1000;
  if (/^\d{4}-\d{2}-\d{2}$/.test(text)) return checked(Date.parse(`${text}T00:00:00`)) ?? fail();
  const rfc3339 = /^\d{4}-\d{2}-\d{2}[Tt ]\d{2}:\d{2}(:\d{2}(\.\d+)?)?([Zz]|[+-]\d{2}:\d{2})?$/;
  if (rfc3339.test(text)) return checked(Date.parse(text.replace(/^(\S{10})[ t]/, "$1T").replace(/z$/, "Z"))) ?? fail();
  return fail();
}

function checked(ms: number): number | undefined {
  return Number.isFinite(ms) ? ms : undefined;
}
