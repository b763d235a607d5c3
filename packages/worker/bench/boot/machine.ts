/**
 * What this host charges for the things a boot does many of, so that runs on different days can be compared:
 * the boot's host side is process start-ups (CLI, supervisor, FUSE server, virtiofsd, QEMU) and first-touch
 * memory, and both vary between the machines these sessions run on (an anonymous page fault took 10.4-11.4 µs
 * on session 19's, a nested-virtualisation host), while the floor has only two of the start-ups. Printed beside
 * the ratio, never folded into it.
 */
import { execFileSync, spawnSync } from "node:child_process";
import { median } from "./raw-floor.js";

export interface MachineCosts {
  /** µs per first touch of an anonymous 4 KiB page (a fresh 64 MiB buffer, every page written once). */
  pageFaultUs: number;
  /** ms from spawn to exit of `node -e 0` (this Node). */
  nodeStartMs: number;
  /** ms from spawn to exit of `<qemu> -version`. */
  qemuVersionMs: number;
}

const PAGE = 4096;

function pageFaultUs(): number {
  const bytes = 64 * 1024 * 1024;
  const samples: number[] = [];
  for (let round = 0; round < 3; round++) {
    // Large enough that the allocator maps it freshly (mmap), so every page is a first touch.
    const view = new Uint8Array(new ArrayBuffer(bytes));
    const t = performance.now();
    for (let i = 0; i < bytes; i += PAGE) view[i] = 1;
    samples.push(((performance.now() - t) * 1000) / (bytes / PAGE));
  }
  return median(samples);
}

function spawnMs(cmd: string, args: string[]): number {
  const samples: number[] = [];
  for (let i = 0; i < 5; i++) {
    const t = performance.now();
    const r = spawnSync(cmd, args, { stdio: "ignore" });
    if (r.error) return NaN;
    samples.push(performance.now() - t);
  }
  return median(samples);
}

export function measureMachineCosts(qemuBin = "qemu-system-x86_64"): MachineCosts {
  let qemu = qemuBin;
  try {
    qemu = execFileSync("sh", ["-c", `command -v ${qemuBin}`], { encoding: "utf8" }).trim() || qemuBin;
  } catch {
    // not on PATH: spawnMs says NaN
  }
  return { pageFaultUs: pageFaultUs(), nodeStartMs: spawnMs(process.execPath, ["-e", "0"]), qemuVersionMs: spawnMs(qemu, ["-version"]) };
}

export function formatMachineCosts(c: MachineCosts): string {
  const f = (x: number, digits: number) => (Number.isFinite(x) ? x.toFixed(digits) : "?");
  return `machine: anonymous page fault ${f(c.pageFaultUs, 2)} µs, node -e 0 ${f(c.nodeStartMs, 0)} ms, qemu -version ${f(c.qemuVersionMs, 0)} ms (medians; the host side of a start pays five process start-ups, the floor two)`;
}
