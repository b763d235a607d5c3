/**
 * `iii-worker __wasm-run <WASI_CONFIG path>`: the runner process of one WASM worker, started by the controller
 * under Node's permission model in its own session. It records itself in vm.json (pid + start time, phase),
 * runs the guest in a worker thread, enforces the wall-clock and CPU limits by terminating that thread, and
 * records the end of the run in last-exit.json (state completed | failed | stopped, exit code, reason).
 */
import { closeSync, openSync, readFileSync, realpathSync, renameSync, rmSync, writeFileSync, writeSync } from "node:fs";
import { dirname, join } from "node:path";
import { Worker } from "node:worker_threads";
import { parseWasiConfig, type WasiConfig } from "./config.js";
import { EngineLink } from "./engine-link.js";
import { assertNoLinksOut, assertNoWorkersFiles } from "./mount-links.js";
import type { GuestData, GuestMessage, WasmLaunch } from "./protocol.js";

/** Least V8 heap a guest thread gets, whatever the memory limit: preview2-shim and jco's glue run in it too. */
export const GUEST_HEAP_FLOOR_MB = 64;
const GUEST_YOUNG_GENERATION_MB = 16;

/** What the runner process itself needs besides the guest's memory and heap (Node, the shim, the engine link). */
export const RUNNER_RSS_ALLOWANCE_MB = 192;
const RSS_POLL_MS = 20;
/** How long a stopped guest thread may take to end before the runner records the end and kills itself. */
const STOP_GRACE_MS = 2_000;

export interface GuestMemoryLimits {
  /** The guest thread's V8 heap (Worker resourceLimits). */
  resourceLimits: { maxOldGenerationSizeMb: number; maxYoungGenerationSizeMb: number };
  /** The runner process's resident memory past which the guest thread is ended. */
  maxRssBytes: number;
}

/**
 * The guest's memory bounds, from the memory limit. `--wasm-max-mem-pages` bounds linear memory only; WasmGC
 * structs and arrays, tables of references and a component's JavaScript live in the V8 heap, which a thread
 * otherwise grows to the host default (4 GiB here). The heap limits end the thread (ERR_WORKER_OUT_OF_MEMORY)
 * when small objects fill it, but V8 does not hold large objects to them while wasm code runs (measured on Node
 * 24.21: 1 MiB GC arrays in a loop reached 2.1 GB RSS under a 64 MiB old generation before the thread ended),
 * so the runner also watches its own resident memory and ends the thread past limit + heap + an allowance.
 */
export function guestMemoryLimits(maxMemoryBytes: number): GuestMemoryLimits {
  const maxOldGenerationSizeMb = Math.max(GUEST_HEAP_FLOOR_MB, Math.ceil(maxMemoryBytes / 2 ** 20));
  return {
    resourceLimits: { maxOldGenerationSizeMb, maxYoungGenerationSizeMb: GUEST_YOUNG_GENERATION_MB },
    maxRssBytes: maxMemoryBytes + (maxOldGenerationSizeMb + GUEST_YOUNG_GENERATION_MB + RUNNER_RSS_ALLOWANCE_MB) * 2 ** 20,
  };
}

/** The longest delay setTimeout takes: past it Node fires after 1 ms (TimeoutOverflowWarning). */
const MAX_TIMER_MS = 2 ** 31 - 1;

/**
 * Calls `fn` after `ms`, however long: a --max-execution-ms past ~24.8 days (3,000,000,000) used to end the run as
 * "timeout" at once (review rev6h). The pending timer is always the last one in `timers`, for the caller to clear.
 */
function armAfter(timers: NodeJS.Timeout[], ms: number, fn: () => void): void {
  const due = performance.now() + ms;
  const arm = (left: number) => {
    timers.push(
      setTimeout(() => {
        const rest = due - performance.now();
        if (rest > 0) arm(rest);
        else fn();
      }, Math.min(left, MAX_TIMER_MS)),
    );
  };
  arm(ms);
}

/** This process's start time in clock ticks since boot (/proc/self/stat is the one /proc file in its read list). */
function ownStartTime(): number | undefined {
  try {
    const stat = readFileSync("/proc/self/stat", "utf8");
    return Number(stat.slice(stat.lastIndexOf(")") + 2).split(" ")[19]);
  } catch {
    return undefined;
  }
}

/** Whether another, writable mount of the run lies inside `dir` (real paths). */
function holdsWritableMount(dir: WasiConfig["dirs"][number], dirs: WasiConfig["dirs"]): boolean {
  const real = (p: string) => {
    try {
      return realpathSync(p);
    } catch {
      return p;
    }
  };
  const outer = real(dir.hostPath);
  return dirs.some((o) => o !== dir && !o.readOnly && (real(o.hostPath) === outer || real(o.hostPath).startsWith(outer.endsWith("/") ? outer : `${outer}/`)));
}

function writeJsonAtomic(path: string, value: unknown): void {
  const tmp = `${path}.${process.pid}.tmp`;
  writeFileSync(tmp, `${JSON.stringify(value, null, 2)}\n`, { mode: 0o600 });
  renameSync(tmp, path);
}

export interface WasmRunEnd {
  state: "completed" | "failed" | "stopped";
  code: number | null;
  reason: string;
}

function report(line: object): void {
  const fd = Number(process.env.III_READY_FD ?? "");
  if (!Number.isInteger(fd) || fd < 3) return;
  try {
    writeSync(fd, `${JSON.stringify(line)}\n`);
    closeSync(fd);
  } catch {
    // the controller is gone; the state files say the same
  }
  delete process.env.III_READY_FD;
}

export async function runWasmRunner(configPath: string): Promise<number> {
  const dir = dirname(configPath);
  const vmJson = join(dir, "vm.json");
  const lastExit = join(dir, "last-exit.json");
  const startedAt = new Date().toISOString();
  const t0 = performance.now();
  const record = { pid: process.pid, startTime: ownStartTime(), vmm: "wasm", startedAt, phase: "pending" as "pending" | "running" };
  writeJsonAtomic(vmJson, record);

  const finish = (end: WasmRunEnd, extra: Record<string, unknown> = {}): number => {
    const usage = process.resourceUsage();
    writeJsonAtomic(lastExit, {
      code: end.code,
      reason: end.reason,
      ...(end.state === "stopped" ? {} : { state: end.state }),
      tier: "wasm",
      endedAt: new Date().toISOString(),
      durationMs: Math.round(performance.now() - t0),
      maxRssKb: usage.maxRSS,
      ...extra,
    });
    rmSync(vmJson, { force: true });
    return 0;
  };

  let launch: WasmLaunch;
  let configText: string;
  let config: WasiConfig;
  try {
    launch = JSON.parse(readFileSync(join(dir, "wasm-launch.json"), "utf8")) as WasmLaunch;
    configText = readFileSync(configPath, "utf8");
    config = parseWasiConfig(configText);
  } catch (error) {
    const reason = (error as Error).message;
    report({ event: "failed", code: "WasiConfigInvalid", message: reason });
    return finish({ state: "failed", code: null, reason });
  }

  try {
    // modules and components alike: no iii project's workers file in a writable mount
    for (const d of config.dirs) assertNoWorkersFiles(d);
    if (launch.kind === "module") {
      // preview 1 only: preview2-shim resolves every path component itself and refuses escapes.
      // A read-only mount holding a writable one is walked as writable: the module rearranges what is below.
      for (const d of config.dirs) assertNoLinksOut(d.readOnly && holdsWritableMount(d, config.dirs) ? { ...d, readOnly: false } : d);
    }
  } catch (error) {
    const reason = (error as Error).message;
    report({ event: "failed", code: (error as { code?: string }).code ?? "WasmStartFailed", message: reason });
    return finish({ state: "failed", code: null, reason });
  }

  const stdoutFd = openSync(join(dir, "logs", "stdout.log"), "a", 0o600);
  const stderrFd = openSync(join(dir, "logs", "stderr.log"), "a", 0o600);
  const data: GuestData = { launch, configText, stdoutFd, stderrFd };
  // A component's shim writes to the process's fds 1 and 2, which the controller points at the log files.
  const { resourceLimits, maxRssBytes } = guestMemoryLimits(config.limits.maxMemoryBytes);
  const worker = new Worker(new URL("./wasm-guest.js", import.meta.url), { workerData: data, stdout: false, stderr: false, env: process.env, resourceLimits });

  let end: WasmRunEnd | undefined;
  let cpuMs = 0;
  const timers: NodeJS.Timeout[] = [];
  let closed = false;
  /** The end of the run as it is recorded (once), whichever way the thread ends. */
  const conclude = (): WasmRunEnd => {
    closed = true;
    for (const t of timers) clearTimeout(t);
    const final = end ?? { state: "failed", code: null, reason: "the guest thread ended without a result" };
    if (final.state === "failed") report({ event: "failed", code: "WasmStartFailed", message: final.reason });
    // A run that ended before `start` heard "ready" still counts as started: it ran.
    report({ event: "ready", pid: process.pid, timings: { ready: Math.round(performance.now() - t0) } });
    closeSync(stdoutFd);
    closeSync(stderrFd);
    finish(final, { kind: launch.kind, ...(cpuMs ? { cpuMs: Math.round(cpuMs) } : {}) });
    return final;
  };
  /**
   * Ends the thread; if it does not end within `graceMs`, records the end and kills this process. V8 does not
   * honour worker.terminate() while wasm code allocates large GC objects (measured on Node 24.21: a loop of
   * 1 MiB array.new_default ran on to its end, 1.1 GB, after terminate()), so a stop must not wait on it.
   */
  const stopWith = (e: WasmRunEnd, graceMs = STOP_GRACE_MS) => {
    if (end) return;
    end = e;
    void worker.terminate();
    const hard = setTimeout(() => {
      if (closed) return;
      conclude();
      process.kill(process.pid, "SIGKILL");
    }, graceMs);
    hard.unref();
  };
  const engine = new EngineLink(
    worker,
    config.engine.url,
    launch.name,
    (line) => writeSync(stderrFd, `[iii: ${line}]\n`),
    (reason) => stopWith({ state: "failed", code: null, reason }),
  );
  const mib = (bytes: number) => Math.round(bytes / 2 ** 20);
  timers.push(
    setInterval(() => {
      const rss = process.memoryUsage.rss();
      // no grace: the memory keeps growing while the thread runs
      if (rss > maxRssBytes) stopWith({ state: "failed", code: null, reason: `memory limit: the runner's resident memory reached ${mib(rss)} MiB (at most ${mib(maxRssBytes)} MiB: the limit, the guest's heap and the runtime)` }, 0);
    }, RSS_POLL_MS),
  );
  // The limits hold from the thread's first instruction, not from "started": compiling and instantiating run
  // guest code too (a module's start function; review s16: a (start) that spins ran 120 s, until the CLI gave up,
  // under a 300 ms limit and a 200 ms budget). CPU is the whole process's since here: V8 compiles wasm and the
  // shim does a component's I/O on other threads than the guest's.
  const { maxExecutionMs, cpuBudgetMs } = config.limits;
  if (maxExecutionMs !== null) armAfter(timers, maxExecutionMs, () => stopWith({ state: "failed", code: null, reason: "timeout" }));
  if (cpuBudgetMs !== null) {
    const cpu0 = process.cpuUsage();
    timers.push(
      setInterval(() => {
        const u = process.cpuUsage(cpu0);
        cpuMs = (u.user + u.system) / 1000;
        if (cpuMs > cpuBudgetMs) stopWith({ state: "failed", code: null, reason: "cpu budget" });
      }, 20),
    );
  }
  const onSignal = () => stopWith({ state: "stopped", code: null, reason: "stopped" });
  process.on("SIGTERM", onSignal);
  process.on("SIGINT", onSignal);

  worker.on("message", (m: GuestMessage) => {
    if (engine.handle(m)) return;
    if (m.event === "started") {
      record.phase = "running";
      writeJsonAtomic(vmJson, record);
      report({ event: "ready", pid: process.pid, timings: { ready: Math.round(performance.now() - t0) } });
    } else if (m.event === "exit") {
      end ??= { state: "completed", code: m.code, reason: `exit ${m.code}` };
    } else if (m.event === "failed") {
      end ??= { state: "failed", code: null, reason: m.reason };
    }
  });
  worker.on("error", (error) => {
    const outOfMemory = (error as NodeJS.ErrnoException).code === "ERR_WORKER_OUT_OF_MEMORY";
    end ??= {
      state: "failed",
      code: null,
      reason: outOfMemory ? `memory limit: the guest's heap passed ${resourceLimits.maxOldGenerationSizeMb} MiB (${error.message})` : `runner: ${error.message}`,
    };
  });
  // preview2-shim ends a component's run with process.exit(code), which ends this thread with that code
  const threadCode = await new Promise<number>((resolve) => worker.once("exit", (code) => resolve(code)));
  if (!end && launch.kind === "component") end = { state: "completed", code: threadCode, reason: `exit ${threadCode}` };
  for (const t of timers) clearTimeout(t);
  await engine.close(end?.reason ?? `thread exit ${threadCode}`);
  if (closed) return 0; // recorded by a hard stop meanwhile
  conclude();
  return 0;
}

/** The runner process's entry (dist/wasm-runner.js): `node [permission flags] wasm-runner.js __wasm-run <config>`. */
export async function wasmRunnerMain(argv: string[]): Promise<void> {
  const i = argv.indexOf("__wasm-run");
  const configPath = i >= 0 ? argv[i + 1] : undefined;
  if (!configPath) {
    process.stderr.write("usage: wasm-runner __wasm-run <WASI_CONFIG path>\n");
    process.exit(2);
  }
  process.exit(await runWasmRunner(configPath));
}
