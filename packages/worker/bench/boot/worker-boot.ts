/**
 * Boot benchmark, row (b): `iii-worker start` → the workload's first stdout line, for the same busybox rootfs
 * as the raw floor, through everything iii adds (CLI, supervisor, FUSE view with the injected Node init,
 * network stack, QEMU, init's steps). Phases come from the supervisor's READY timings.
 */
import { spawn } from "node:child_process";
import { existsSync, mkdtempSync, readFileSync, rmSync, statSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { setTimeout as sleep } from "node:timers/promises";
import type { PhaseSamples } from "./raw-floor.js";
import { managedDir } from "../../src/paths.js";

const CLI = fileURLToPath(new URL("../../dist/cli.js", import.meta.url));
const FIRST_LINE = "iii-worker-first-line";

function runCli(args: string[], cwd: string, env: NodeJS.ProcessEnv): Promise<{ code: number | null; stderr: string }> {
  return new Promise((resolve) => {
    const child = spawn(process.execPath, [CLI, ...args], { cwd, env: { ...process.env, ...env }, stdio: ["ignore", "ignore", "pipe"] });
    let stderr = "";
    child.stderr.on("data", (d) => (stderr += d));
    child.on("close", (code) => resolve({ code, stderr }));
  });
}

/** ms from `t0` until `log`, past its first `before` bytes, contains `marker`; NaN after two minutes. */
export async function msUntilLogHas(log: string, before: number, marker: string, t0: number): Promise<number> {
  while (performance.now() - t0 < 120_000) {
    if (existsSync(log) && readFileSync(log).subarray(before).includes(marker)) return performance.now() - t0;
    await sleep(2);
  }
  return NaN;
}

export interface WorkerBootOptions {
  busyboxRootfs: string;
  runs: number;
  onRun?: (index: number, sample: Record<string, number>) => void;
}

/** Starts the worker `runs` times; each sample: phases from READY plus total start → first workload line. */
export async function measureWorkerBoot(options: WorkerBootOptions): Promise<PhaseSamples> {
  const work = mkdtempSync(join("/tmp", "iii-bench-w-"));
  const env = { III_HOME: join(work, "h") };
  const samples: PhaseSamples = {};
  const add = (phase: string, ms: number) => (samples[phase] ??= []).push(ms);
  try {
    const added = await runCli(["add", `dir:${options.busyboxRootfs}`, "--name", "bench", "--cpus", "1", "--memory", "256Mi", "--", "sh", "-c", `echo ${FIRST_LINE}; exec sleep 1000`], work, env);
    if (added.code !== 0) throw new Error(`add failed: ${added.stderr}`);
    const stdoutLog = join(managedDir("bench", env, work), "logs/stdout.log");
    for (let i = 0; i < options.runs; i++) {
      const before = existsSync(stdoutLog) ? statSync(stdoutLog).size : 0;
      const t0 = performance.now();
      const started = runCli(["start", "bench", "--timings"], work, env);
      const firstLine = await msUntilLogHas(stdoutLog, before, FIRST_LINE, t0);
      const result = await started;
      if (result.code !== 0) throw new Error(`start failed: ${result.stderr}`);
      const sample: Record<string, number> = {};
      const timings = JSON.parse(result.stderr.match(/timings (\{.*\})/)?.[1] ?? "{}") as Record<string, number>;
      for (const [phase, ms] of Object.entries(timings)) sample[phase] = ms;
      sample["start → first workload line"] = firstLine;
      for (const [phase, ms] of Object.entries(sample)) add(phase, ms);
      options.onRun?.(i, sample);
      const stopped = await runCli(["stop", "bench", "--timeout", "1"], work, env);
      if (stopped.code !== 0) throw new Error(`stop failed: ${stopped.stderr}`);
    }
    return samples;
  } finally {
    await runCli(["stop", "bench", "--timeout", "1"], work, env);
    rmSync(work, { recursive: true, force: true });
  }
}

/** Host RSS of one idle worker VM: supervisor, its FUSE server, virtiofsd and QEMU. */
export async function measureWorkerIdleRss(busyboxRootfs: string): Promise<Record<string, number>> {
  const work = mkdtempSync(join(tmpdir(), "iii-bench-rss-"));
  const env = { III_HOME: join(work, "h") };
  try {
    await runCli(["add", `dir:${busyboxRootfs}`, "--name", "idle", "--cpus", "1", "--memory", "256Mi", "--", "sleep", "1000"], work, env);
    const started = await runCli(["start", "idle"], work, env);
    if (started.code !== 0) throw new Error(`start failed: ${started.stderr}`);
    await sleep(3_000);
    const vm = JSON.parse(readFileSync(join(managedDir("idle", env, work), "vm.json"), "utf8")) as { pid: number; children: { name: string; pid: number }[] };
    const rss = (pid: number) => Number(/VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, "utf8"))?.[1] ?? 0) * 1024;
    const out: Record<string, number> = { supervisor: rss(vm.pid) };
    for (const child of vm.children) out[child.name] = (out[child.name] ?? 0) + rss(child.pid);
    out.total = Object.values(out).reduce((a, b) => a + b, 0);
    return out;
  } finally {
    await runCli(["stop", "idle", "--timeout", "1"], work, env);
    rmSync(work, { recursive: true, force: true });
  }
}
