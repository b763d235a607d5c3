import { closeSync, fstatSync, openSync, readSync, statSync } from "node:fs";
import { IiiError } from "../errors.js";

/** The last `maxBytes` of a file (from `fromOffset` on) as text; empty when it does not exist. */
export function readTail(path: string, maxBytes = 4096, fromOffset = 0): string {
  let fd: number | undefined;
  try {
    fd = openSync(path, "r");
    const size = fstatSync(fd).size;
    const length = Math.max(0, Math.min(size - fromOffset, maxBytes));
    const buf = Buffer.alloc(length);
    readSync(fd, buf, 0, length, size - length);
    return buf.toString("utf8");
  } catch {
    return "";
  } finally {
    if (fd !== undefined) closeSync(fd);
  }
}

/** The last `lines` non-empty lines of a console log (its last 16 KiB from `fromOffset` on). */
function nonEmptyTail(path: string, lines: number, fromOffset: number): string[] {
  return readTail(path, 16 * 1024, fromOffset)
    .split(/\r?\n/)
    .filter((line) => line.trim().length > 0)
    .slice(-lines);
}

/** The last `lines` non-empty lines of a console log, for error messages. */
export function consoleTail(path: string, lines = 20, fromOffset = 0): string {
  return nonEmptyTail(path, lines, fromOffset).join("\n");
}

/**
 * Where a run's part of a console log starts: the log keeps earlier runs (appended, rotated by size), and a failed
 * boot must quote only its own lines (it quoted the previous run's `workload exited with signal SIGTERM` under a
 * QEMU that never started).
 */
export interface ConsoleMark {
  /** The file's inode when the run began (absent: there was none); a rotation during the run changes it. */
  ino?: number;
  size: number;
}

export function consoleMark(path: string): ConsoleMark {
  const st = statSync(path, { throwIfNoEntry: false });
  return st ? { ino: st.ino, size: st.size } : { size: 0 };
}

/**
 * The last `lines` non-empty lines the console log got since `mark` (from the run's start; the whole file when it
 * was rotated meanwhile, which left only this run's lines in it).
 */
export function consoleLinesSince(path: string, mark: ConsoleMark, lines: number): string[] {
  const from = offsetSince(path, mark);
  return from === undefined ? [] : nonEmptyTail(path, lines, from);
}

/** Where the log's part since `mark` starts now: the mark's size, or 0 when the log was rotated; undefined if none. */
function offsetSince(path: string, mark: ConsoleMark): number | undefined {
  const st = statSync(path, { throwIfNoEntry: false });
  if (!st) return undefined;
  return st.ino === mark.ino && st.size >= mark.size ? mark.size : 0;
}

/**
 * Polls a growing log file until `match` finds a line; resolves with that line and the ms waited. Polling
 * (every `intervalMs`) rather than fs.watch: QEMU appends through its own fd and inotify on some
 * filesystems misses writes; 5 ms is well below a boot's resolution.
 */
export async function waitForLine(
  path: string,
  match: RegExp | ((line: string) => boolean),
  options: { timeoutMs: number; intervalMs?: number; stop?: () => string | undefined; fromOffset?: number },
): Promise<{ line: string; waitedMs: number }> {
  const started = performance.now();
  const test = typeof match === "function" ? match : (line: string) => match.test(line);
  let offset = options.fromOffset ?? 0;
  let partial = "";
  let fd: number | undefined;
  try {
    for (;;) {
      if (fd === undefined) {
        try {
          fd = openSync(path, "r");
        } catch {
          // not created yet
        }
      }
      if (fd !== undefined) {
        const size = fstatSync(fd).size;
        if (size < offset) {
          offset = 0; // truncated by a new run
          partial = "";
        }
        if (size > offset) {
          const buf = Buffer.alloc(size - offset);
          readSync(fd, buf, 0, buf.length, offset);
          offset = size;
          const lines = (partial + buf.toString("utf8")).split("\n");
          partial = lines.pop() ?? "";
          for (const raw of lines) {
            const line = raw.replace(/\r$/, "");
            if (test(line)) return { line, waitedMs: performance.now() - started };
          }
        }
      }
      const stopped = options.stop?.();
      if (stopped !== undefined) throw new IiiError("VmBootFailed", stopped);
      if (performance.now() - started > options.timeoutMs) throw new IiiError("VmBootFailed", `no matching line in ${path} after ${options.timeoutMs} ms`);
      await new Promise((r) => setTimeout(r, options.intervalMs ?? 5));
    }
  } finally {
    if (fd !== undefined) closeSync(fd);
  }
}

/** The text a console log got since `mark`, its last `maxBytes` at most (the whole file when it was rotated meanwhile). */
export function consoleTextSince(path: string, mark: ConsoleMark, maxBytes = 64 * 1024): string {
  const from = offsetSince(path, mark);
  return from === undefined ? "" : readTail(path, maxBytes, from);
}

const KERNEL_TIMESTAMP = /^\[\s*\d+\.\d+\]\s*/;

/**
 * What a guest kernel said as it died, in one line: its first oops (or BUG, or general protection fault) with
 * where it was (RIP), then the panic's reason. Undefined when the text holds no panic. A boot that dies in the
 * kernel ends QEMU like a reboot (`panic=-1`), and the last lines of the console are the end of a stack trace:
 * this names the cause.
 */
export function kernelPanicSummary(text: string): string | undefined {
  const lines = text.split(/\r?\n/).map((l) => l.replace(KERNEL_TIMESTAMP, "").trim());
  const panic = lines.find((l) => l.startsWith("Kernel panic - not syncing:"));
  if (!panic) return undefined;
  const first = lines.findIndex((l) => /^(Oops: |BUG: |kernel BUG at |general protection fault)/.test(l));
  if (first < 0) return panic;
  const rip = lines.slice(first, first + 40).map((l) => /^RIP: [0-9a-f]{4}:(\S+)/.exec(l)?.[1]).find((r) => r !== undefined);
  return `${lines[first]}${rip ? ` at ${rip}` : ""}; ${panic}`;
}
