import { createWriteStream, type WriteStream } from "node:fs";
import { setCloseOnExec } from "../host/file-lock.js";

/**
 * The supervisor reports the outcome of a boot to the `start` that spawned it over an inherited pipe
 * (fd 3): one JSON line, then the pipe closes. If the supervisor dies first, `start` sees EOF instead.
 */
export type BootReport =
  | { event: "ready"; pid: number; timings: Record<string, number> }
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
