import type { ChildProcess } from "node:child_process";
import { createWriteStream, type WriteStream } from "node:fs";
import { setTimeout as sleep } from "node:timers/promises";
import { IiiError } from "../errors.js";
import { setCloseOnExec } from "../host/file-lock.js";

/**
 * The supervisor reports the outcome of a boot to the `start` that spawned it over an inherited pipe
 * (fd 3): one JSON line, then the pipe closes. If the supervisor dies first, `start` sees EOF instead.
 */
export type BootReport =
  /** `origin`: the reporting process's start (performance.timeOrigin, ms since the epoch); its timings count from there. */
  | { event: "ready"; pid: number; origin?: number; timings: Record<string, number> }
  | { event: "failed"; code: string; message: string; consoleTail?: string };

export const READY_FD = 3;

export class ReadyPipe {
  private stream: WriteStream | undefined;

  constructor(fd: number | undefined) {
    if (fd !== undefined) {
      try {
        setCloseOnExec(fd);
        this.stream = createWriteStream("", { fd, autoClose: true });
        this.stream.on("error", () => {
          this.stream = undefined;
        });
      } catch {
        this.stream = undefined;
      }
    }
  }

  report(report: BootReport): void {
    const stream = this.stream;
    if (!stream) return;
    this.stream = undefined;
    stream.end(`${JSON.stringify(report)}\n`);
  }
}

/**
 * The starting side: waits for the one report line a freshly spawned child (supervisor or WASM runner) writes on its
 * ready pipe, then lets the child go (unref, pipe closed). It never waits for EOF: a descendant could hold the pipe
 * open. On timeout the child gets SIGTERM and `timedOut` is true; `line` is undefined when the child closed the pipe
 * (exited) without a report.
 */
export async function awaitReadyLine(child: ChildProcess, timeoutMs: number): Promise<{ timedOut: boolean; line: string | undefined }> {
  const pipe = child.stdio[READY_FD] as NodeJS.ReadableStream | null | undefined;
  if (!pipe) throw new IiiError("Internal", `pid ${child.pid} was spawned without its ready pipe`);
  let text = "";
  pipe.setEncoding("utf8");
  const ended = new Promise<void>((resolve) => {
    pipe.on("data", (chunk: string) => {
      text += chunk;
      if (text.includes("\n")) resolve();
    });
    pipe.on("end", () => resolve()).on("close", () => resolve());
  });
  const timedOut = await Promise.race([ended.then(() => false), sleep(timeoutMs, undefined, { ref: false }).then(() => true)]);
  child.unref();
  (pipe as unknown as { destroy?: () => void }).destroy?.();
  if (timedOut) {
    try {
      process.kill(child.pid!, "SIGTERM");
    } catch {
      // already gone
    }
  }
  return { timedOut, line: text.split("\n").find((l) => l.trim().length > 0) };
}
