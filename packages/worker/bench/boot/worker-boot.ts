/**
 * Boot benchmark, row (b): `iii-worker start` → the workload's first stdout line, for the same busybox rootfs
 * as the raw floor, through everything iii adds (CLI, supervisor, FUSE view with the injected static init,
 * network stack, QEMU, init's steps). Phases come from `start --timings`: the CLI's share and the supervisor's
 * phases (counted from its process start) and init's steps.
 */
import { spawn } from "node:child_process";
import { existsSync, mkdtempSync, readFileSync, rmSync, statSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { setTimeout as sleep } from "node:timers/promises";
import { managedDir } from "../../src/paths.js";

const CLI = fileURLToPath(new URL("../../dist/cli.js", import.meta.url));
const FIRST_LINE = "iii-worker-first-line";

/** Runs the built CLI (or `cli`, another build's, for an A/B); its stderr for the failure message. (bench/density uses it too.) */
export function runCli(args: string[], cwd: string, env: NodeJS.ProcessEnv, cli = CLI): Promise<{ code: number | null; stderr: string }> {
  return new Promise((resolve) => {
    const child = spawn(process.execPath, [cli, ...args], { cwd, env: { ...process.env, ...env }, stdio: ["ignore", "ignore", "pipe"] });
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

/**
 * One worker, added once, started and stopped per round: `start()` is one `iii-worker start --timings` →
 * first workload line, with the CLI's and the supervisor's timings; so rounds interleave with the floor's.
 */
export class WorkerBootRig {
  private readonly work = mkdtempSync(join("/tmp", "iii-bench-w-"));
  private readonly env: NodeJS.ProcessEnv;
  private stdoutLog = "";

  /** `cli`: the CLI to run (default this build's); `env`: added to its environment (e.g. III_INIT_PATH). */
  constructor(private readonly cli = CLI, env: NodeJS.ProcessEnv = {}) {
    this.env = { ...env, III_HOME: join(this.work, "h") };
  }

  async add(busyboxRootfs: string, memory = "256Mi"): Promise<void> {
    const added = await runCli(["add", `dir:${busyboxRootfs}`, "--name", "bench", "--cpus", "1", "--memory", memory, "--", "sh", "-c", `echo ${FIRST_LINE}; exec sleep 1000`], this.work, this.env, this.cli);
    if (added.code !== 0) throw new Error(`add failed: ${added.stderr}`);
    this.stdoutLog = join(managedDir("bench", this.env, this.work), "logs/stdout.log");
  }

  /** One start → first workload line (bench clock) plus the timings `start --timings` printed; then a stop. */
  async start(): Promise<Record<string, number>> {
    const before = existsSync(this.stdoutLog) ? statSync(this.stdoutLog).size : 0;
    const t0 = performance.now();
    const started = runCli(["start", "bench", "--timings"], this.work, this.env, this.cli);
    const firstLine = await msUntilLogHas(this.stdoutLog, before, FIRST_LINE, t0);
    const result = await started;
    if (result.code !== 0) throw new Error(`start failed: ${result.stderr}`);
    const sample = JSON.parse(result.stderr.match(/timings (\{.*\})/)?.[1] ?? "{}") as Record<string, number>;
    sample["start → first workload line"] = firstLine;
    const stopped = await runCli(["stop", "bench", "--timeout", "1"], this.work, this.env, this.cli);
    if (stopped.code !== 0) throw new Error(`stop failed: ${stopped.stderr}`);
    return sample;
  }

  async close(): Promise<void> {
    await runCli(["stop", "bench", "--timeout", "1"], this.work, this.env, this.cli);
    rmSync(this.work, { recursive: true, force: true });
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
