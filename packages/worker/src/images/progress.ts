import { createRequire } from "node:module";
import type { MultiBar, SingleBar } from "cli-progress";

/** Byte progress of a pull: one bar per layer and a total. Silent unless enabled and stderr is usable. */
export interface PullProgress {
  addLayer(id: string, totalBytes: number): void;
  advance(id: string, bytes: number): void;
  /** Marks a layer as already present (cache hit). */
  complete(id: string): void;
  stop(): void;
}

function formatBytes(bytes: number): string {
  if (bytes >= 1024 ** 3) return `${(bytes / 1024 ** 3).toFixed(2)} GiB`;
  if (bytes >= 1024 ** 2) return `${(bytes / 1024 ** 2).toFixed(1)} MiB`;
  if (bytes >= 1024) return `${(bytes / 1024).toFixed(1)} KiB`;
  return `${bytes} B`;
}

class SilentProgress implements PullProgress {
  addLayer(): void {}
  advance(): void {}
  complete(): void {}
  stop(): void {}
}

class BarProgress implements PullProgress {
  private readonly multi: MultiBar;
  private readonly bars = new Map<string, { bar: SingleBar; total: number; done: number }>();
  private readonly totalBar: SingleBar;
  private total = 0;
  private done = 0;

  constructor(stream: NodeJS.WriteStream) {
    // loaded only when bars are shown (a pull without a TTY never needs it)
    const { MultiBar, Presets } = createRequire(import.meta.url)("cli-progress") as typeof import("cli-progress");
    this.multi = new MultiBar(
      {
        stream,
        format: " {label} [{bar}] {percentage}% | {doneText}/{totalText}",
        hideCursor: true,
        clearOnComplete: false,
        stopOnComplete: false,
        noTTYOutput: !stream.isTTY,
        notTTYSchedule: 2000,
        fps: 10,
        barsize: 30,
      },
      Presets.shades_classic,
    );
    this.totalBar = this.multi.create(1, 0, { label: "total       ", doneText: "0 B", totalText: "0 B" });
  }

  addLayer(id: string, totalBytes: number): void {
    const bar = this.multi.create(Math.max(totalBytes, 1), 0, {
      label: id.replace("sha256:", "").slice(0, 12),
      doneText: "0 B",
      totalText: formatBytes(totalBytes),
    });
    this.bars.set(id, { bar, total: totalBytes, done: 0 });
    this.total += totalBytes;
    this.totalBar.setTotal(Math.max(this.total, 1));
    this.totalBar.update(this.done, { totalText: formatBytes(this.total), doneText: formatBytes(this.done) });
  }

  advance(id: string, bytes: number): void {
    const entry = this.bars.get(id);
    if (!entry) return;
    entry.done += bytes;
    this.done += bytes;
    entry.bar.update(entry.done, { doneText: formatBytes(entry.done) });
    this.totalBar.update(this.done, { doneText: formatBytes(this.done) });
  }

  complete(id: string): void {
    const entry = this.bars.get(id);
    if (!entry) return;
    this.advance(id, entry.total - entry.done);
  }

  stop(): void {
    this.multi.stop();
  }
}

export function createPullProgress(enabled: boolean, stream: NodeJS.WriteStream = process.stderr): PullProgress {
  return enabled ? new BarProgress(stream) : new SilentProgress();
}
