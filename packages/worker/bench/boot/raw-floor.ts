/**
 * Boot benchmark, row (a): the raw floor. QEMU microvm + the libkrunfw kernel + one virtiofsd serving a plain
 * busybox directory (no FUSE, no network, no supervisor) to the init's first console line. Everything iii
 * adds (row b, `iii worker start` → first workload line) is measured against this.
 */
import { execFileSync } from "node:child_process";
import { chmodSync, cpSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { QemuVmm } from "../../src/vmm/qemu-vmm.js";
import type { Accel } from "../../src/vmm/accel.js";

export const RAW_FLOOR_PHASES = [
  "virtiofsd ready",
  "qemu start (spawn → QMP)",
  "kernel + init → first line",
  "first console line",
  "qemu exit",
] as const;

export type PhaseSamples = Record<string, number[]>;

export interface RawFloorOptions {
  kernelPath: string;
  /** A busybox rootfs directory (test/fixtures/build-busybox-rootfs.sh); default: build/cached by the script. */
  busyboxRootfs?: string;
  /** ≥ 10 for the published median. */
  runs?: number;
  accel?: Accel;
  vcpus?: number;
  memoryBytes?: number;
  /** TCG boot tuning on the kernel command line (default true, as for real workers). */
  tcgTuning?: boolean;
  /** Called after each boot, e.g. to print progress. */
  onRun?: (index: number, sample: Record<string, number>) => void;
}

const FIRST_LINE = "iii-floor-first-line";

export function buildBusyboxRootfs(): string {
  const script = fileURLToPath(new URL("../../test/fixtures/build-busybox-rootfs.sh", import.meta.url));
  return execFileSync("sh", [script], { encoding: "utf8" }).trim();
}

/** Boots `runs` times (sequentially) and returns each phase's samples in ms. */
export async function measureRawFloor(options: RawFloorOptions): Promise<PhaseSamples> {
  const runs = options.runs ?? 10;
  const work = mkdtempSync(join(tmpdir().length < 20 ? tmpdir() : "/tmp", "iii-bench-"));
  const samples: PhaseSamples = Object.fromEntries(RAW_FLOOR_PHASES.map((p) => [p, [] as number[]]));
  try {
    const root = join(work, "root");
    cpSync(options.busyboxRootfs ?? buildBusyboxRootfs(), root, { recursive: true, verbatimSymlinks: true });
    // The smallest init that proves the root works: print, then reboot (reboot=t + -no-reboot ends QEMU).
    writeFileSync(join(root, "init.krun"), `#!/bin/busybox sh\necho ${FIRST_LINE}\n/bin/busybox reboot -f\n`);
    chmodSync(join(root, "init.krun"), 0o755);
    for (let i = 0; i < runs; i++) {
      const runDir = join(work, `run${i}`);
      mkdirSync(runDir);
      const vm = new QemuVmm({
        name: `floor-${i}`,
        kernelPath: options.kernelPath,
        root: { tag: "rootfs", hostDir: root },
        vcpus: options.vcpus ?? 1,
        memoryBytes: options.memoryBytes ?? 256 * 1024 * 1024,
        consoleLogPath: join(runDir, "console.log"),
        runDir,
        accel: options.accel,
        tcgTuning: options.tcgTuning,
      });
      try {
        await vm.prepare();
        const t0 = performance.now();
        await vm.start();
        await vm.waitForConsole((line) => line.includes(FIRST_LINE), 120_000);
        const firstLine = performance.now() - t0;
        await vm.wait();
        const exit = performance.now() - t0;
        const sample: Record<string, number> = {
          "virtiofsd ready": vm.timings.virtiofsdReadyMs ?? NaN,
          "qemu start (spawn → QMP)": (vm.timings.qmpReadyMs ?? NaN) - (vm.timings.qemuSpawnedMs ?? NaN),
          "kernel + init → first line": firstLine - (vm.timings.qmpReadyMs ?? NaN),
          "first console line": firstLine,
          "qemu exit": exit,
        };
        for (const [phase, ms] of Object.entries(sample)) samples[phase]!.push(ms);
        options.onRun?.(i, sample);
      } finally {
        await vm.cleanup();
      }
    }
    return samples;
  } finally {
    rmSync(work, { recursive: true, force: true });
  }
}

/** Resident set size of a process in bytes (VmRSS of /proc/<pid>/status), or NaN when it is gone. */
export function rssBytes(pid: number): number {
  try {
    const kib = /^VmRSS:\s+(\d+) kB/m.exec(readFileSync(`/proc/${pid}/status`, "utf8"))?.[1];
    return kib ? Number(kib) * 1024 : NaN;
  } catch {
    return NaN;
  }
}

/**
 * Host RSS of QEMU and virtiofsd for one idle busybox VM (init prints and sleeps), sampled `settleMs` after
 * the first console line. QEMU's figure includes the guest memory the guest has touched.
 */
export async function measureIdleRss(options: Omit<RawFloorOptions, "runs" | "onRun"> & { settleMs?: number }): Promise<Record<string, number>> {
  const work = mkdtempSync(join(tmpdir().length < 20 ? tmpdir() : "/tmp", "iii-bench-rss-"));
  const root = join(work, "root");
  cpSync(options.busyboxRootfs ?? buildBusyboxRootfs(), root, { recursive: true, verbatimSymlinks: true });
  writeFileSync(join(root, "init.krun"), `#!/bin/busybox sh\necho ${FIRST_LINE}\nwhile true; do /bin/busybox sleep 60; done\n`);
  chmodSync(join(root, "init.krun"), 0o755);
  const vm = new QemuVmm({
    name: "floor-rss",
    kernelPath: options.kernelPath,
    root: { tag: "rootfs", hostDir: root },
    vcpus: options.vcpus ?? 1,
    memoryBytes: options.memoryBytes ?? 256 * 1024 * 1024,
    consoleLogPath: join(work, "console.log"),
    runDir: join(work, "run"),
    accel: options.accel,
  });
  try {
    await vm.start();
    await vm.waitForConsole((line) => line.includes(FIRST_LINE), 120_000);
    await new Promise((r) => setTimeout(r, options.settleMs ?? 2_000));
    const out: Record<string, number> = {};
    for (const p of vm.processes()) out[p.tag ? `${p.role}:${p.tag}` : p.role] = rssBytes(p.pid);
    return out;
  } finally {
    await vm.cleanup();
    rmSync(work, { recursive: true, force: true });
  }
}

export function median(values: readonly number[]): number {
  const sorted = [...values].filter((v) => Number.isFinite(v)).sort((a, b) => a - b);
  if (sorted.length === 0) return NaN;
  const mid = sorted.length >> 1;
  return sorted.length % 2 ? sorted[mid]! : (sorted[mid - 1]! + sorted[mid]!) / 2;
}

export interface BootRow {
  phase: string;
  /** Median ms. */
  ms: number;
  /** Median ms of the floor to compare with (row b); prints `ours  floor  ratio`. */
  floorMs?: number;
}

export function medians(samples: PhaseSamples): BootRow[] {
  return Object.entries(samples).map(([phase, values]) => ({ phase, ms: median(values) }));
}

/** `phase  ms` rows, plus `floor` and `ours/floor` columns for the rows that have a floor. */
export function formatBootTable(rows: readonly BootRow[]): string {
  const width = Math.max(5, ...rows.map((r) => r.phase.length));
  const withFloor = rows.some((r) => r.floorMs !== undefined);
  const head = `${"phase".padEnd(width)}  ${"ms".padStart(8)}${withFloor ? `  ${"floor".padStart(8)}  ${"ours/floor".padStart(10)}` : ""}`;
  const lines = rows.map((r) => {
    const base = `${r.phase.padEnd(width)}  ${r.ms.toFixed(0).padStart(8)}`;
    if (!withFloor) return base;
    if (r.floorMs === undefined) return base;
    return `${base}  ${r.floorMs.toFixed(0).padStart(8)}  ${(r.ms / r.floorMs).toFixed(2).padStart(10)}`;
  });
  return [head, ...lines].join("\n");
}
