import { spawn, type ChildProcess } from "node:child_process";
import { closeSync, existsSync, openSync } from "node:fs";
import { fileURLToPath } from "node:url";
import { IiiError, isErrorCode } from "../errors.js";
import type { WorkerPaths } from "../paths.js";
import { consoleLinesSince, consoleMark, type ConsoleMark } from "../vmm/console-log.js";
import { DEFAULT_BOOT_TIMEOUT_MS } from "./request.js";
import { awaitReadyLine, READY_FD, type BootReport } from "./ready-pipe.js";

const SUPERVISOR_ENTRY = fileURLToPath(new URL("./supervisor.js", import.meta.url));

export interface SpawnSupervisorOptions {
  name: string;
  /** The project (directory of iii.workers.yaml) the worker belongs to. */
  projectDir: string;
  paths: WorkerPaths;
  env?: NodeJS.ProcessEnv;
  bootTimeoutMs?: number;
}

/**
 * Spawns the worker's supervisor (`dist/supervisor.js <name> <project-dir>`) in its own session (it outlives this CLI) and waits for its boot
 * report on fd 3. Rejects with the supervisor's reason, plus the console tail, when the boot fails.
 */
export async function spawnSupervisor(options: SpawnSupervisorOptions): Promise<Extract<BootReport, { event: "ready" }>> {
  const { paths } = options;
  const marks = runMarks(paths);
  const log = openSync(paths.supervisorLog, "a");
  const spawnedAt = performance.now();
  let child;
  try {
    child = spawn(process.execPath, [SUPERVISOR_ENTRY, options.name, options.projectDir], {
      detached: true,
      stdio: ["ignore", log, log, "pipe"],
      env: { ...(options.env ?? process.env), III_READY_FD: String(READY_FD) },
    });
  } finally {
    closeSync(log);
  }
  return awaitBootReport(child, spawnedAt, options, marks);
}

/** Where this run's part of the worker's logs begins: they keep earlier runs, and a failure quotes only its own. */
interface RunMarks {
  console: ConsoleMark;
  supervisor: ConsoleMark;
}

function runMarks(paths: WorkerPaths): RunMarks {
  return { console: consoleMark(paths.consoleLog), supervisor: consoleMark(paths.supervisorLog) };
}

/** The environment variable that starts a supervisor in standby (spawnStandbySupervisor). */
export const STANDBY_ENV = "III_SUPERVISOR_STANDBY";

/** A supervisor spawned before `start` has checked anything: go() lets it boot the VM, abort() ends it. */
export interface StandbySupervisor {
  /** Writes `go` on its stdin (the checks passed, the launch request is written) and waits for its boot report, as spawnSupervisor does. */
  go(options: SpawnSupervisorOptions): Promise<Extract<BootReport, { event: "ready" }>>;
  /** Closes its stdin without `go`: it ends its FUSE server and exits, having created nothing. Idempotent. */
  abort(): void;
}

/**
 * Spawns the worker's supervisor (and, through it, its FUSE server) in standby at the beginning of `start`, so that
 * their Node start-up and module loading (≈170 ms each under TCG here) overlap the CLI's own checks (the workers
 * file, the rootfs, the kernel, QEMU, the accel). The standby reads nothing but its stdin: `go` and it boots as
 * spawnSupervisor's would; end of file (abort(), or this process dying) and it exits having created nothing.
 * Returns undefined when the worker's log directory does not exist yet: a first start creates nothing before its
 * checks pass, so it spawns its supervisor afterwards (spawnSupervisor).
 */
export function spawnStandbySupervisor(options: { name: string; projectDir: string; paths: WorkerPaths; env?: NodeJS.ProcessEnv }): StandbySupervisor | undefined {
  if (!existsSync(options.paths.logs)) return undefined;
  const marks = runMarks(options.paths);
  let log: number;
  try {
    log = openSync(options.paths.supervisorLog, "a");
  } catch {
    return undefined;
  }
  const spawnedAt = performance.now();
  let child: ChildProcess;
  try {
    child = spawn(process.execPath, [SUPERVISOR_ENTRY, options.name, options.projectDir], {
      detached: true,
      stdio: ["pipe", log, log, "pipe"],
      env: { ...(options.env ?? process.env), III_READY_FD: String(READY_FD), [STANDBY_ENV]: "1" },
    });
  } catch {
    return undefined;
  } finally {
    closeSync(log);
  }
  child.stdin!.on("error", () => {});
  let settled = false;
  const abort = () => {
    if (settled) return;
    settled = true;
    child.stdin!.end();
    child.unref();
    (child.stdio[READY_FD] as unknown as { destroy?: () => void } | null)?.destroy?.();
  };
  return {
    abort,
    go: async (spawnOptions) => {
      if (settled) throw new IiiError("Internal", "the standby supervisor was already released");
      // A standby that died meanwhile (it should not) is replaced by an ordinary spawn.
      if (child.exitCode !== null || child.signalCode !== null) {
        abort();
        return spawnSupervisor(spawnOptions);
      }
      settled = true;
      const goAt = performance.now();
      child.stdin!.end("go\n");
      const report = await awaitBootReport(child, spawnedAt, spawnOptions, marks);
      return { ...report, timings: { "cli:go": Math.round(goAt), ...report.timings } };
    },
  };
}

/** Waits for a spawned supervisor's boot report on its ready pipe; the ready report gets the CLI's timings. */
async function awaitBootReport(child: ChildProcess, spawnedAt: number, options: SpawnSupervisorOptions, marks: RunMarks): Promise<Extract<BootReport, { event: "ready" }>> {
  const { paths } = options;
  const timeoutMs = options.bootTimeoutMs ?? DEFAULT_BOOT_TIMEOUT_MS;
  const { timedOut, line } = await awaitReadyLine(child, timeoutMs);
  if (timedOut) {
    throw new IiiError("VmBootFailed", `worker "${options.name}" did not report READY within ${timeoutMs / 1000} s${consoleTailSuffix(paths, marks)}`);
  }
  let report: BootReport | undefined;
  try {
    report = line ? (JSON.parse(line) as BootReport) : undefined;
  } catch {
    report = undefined;
  }
  if (report?.event === "ready") {
    // This process's share of the boot, beside the supervisor's phases (which count from its own start):
    // "cli:spawn" when the supervisor was spawned, "cli:supervisor" when its process started, "cli:ready" when
    // its READY arrived, each in ms since this process started.
    const cli: Record<string, number> = { "cli:spawn": Math.round(spawnedAt), "cli:ready": Math.round(performance.now()) };
    if (typeof report.origin === "number") cli["cli:supervisor"] = Math.round(report.origin - performance.timeOrigin);
    return { ...report, timings: { ...cli, ...report.timings } };
  }
  if (report?.event === "failed") {
    // A package's own code (a FilesystemError's, a NetworkError's) reaches the CLI line as it is.
    const code = isErrorCode(report.code) ? report.code : "VmBootFailed";
    throw new IiiError(code, `${report.message}${report.consoleTail ? ` (console: ${oneLine(report.consoleTail)})` : ""}`);
  }
  const supervisorTail = oneLine(consoleLinesSince(paths.supervisorLog, marks.supervisor, 3).join("\n"));
  throw new IiiError("VmBootFailed", `the supervisor of "${options.name}" exited during boot${supervisorTail ? `: ${supervisorTail}` : ""}${consoleTailSuffix(paths, marks)}`);
}

function oneLine(text: string): string {
  return text.trim().split("\n").map((l) => l.trim()).filter(Boolean).join(" | ").slice(0, 400);
}

/** This run's last console lines (the log keeps earlier runs: a timeout quoted the previous run's last words). */
function consoleTailSuffix(paths: WorkerPaths, marks: RunMarks): string {
  const tail = oneLine(consoleLinesSince(paths.consoleLog, marks.console, 5).join("\n"));
  return tail ? ` (console: ${tail})` : "";
}
