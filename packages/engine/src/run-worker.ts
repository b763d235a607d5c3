import { spawn } from "node:child_process";
import { constants } from "node:os";
import { pathToFileURL } from "node:url";
import { locateWorker } from "./locate-worker.js";

export class WorkerNotFoundError extends Error {
  readonly code = "WorkerNotFound";
  constructor(explicit: string | undefined) {
    super(
      explicit
        ? `iii-worker not found at III_WORKER_BIN=${explicit}`
        : "iii-worker not found: install @iii/worker, put iii-worker on PATH, or set III_WORKER_BIN",
    );
    this.name = "WorkerNotFoundError";
  }
}

const FORWARDED_SIGNALS = ["SIGINT", "SIGTERM", "SIGHUP"] as const;

/** Exit status the way a shell reports it: the code, or 128 + n for death by signal n. */
export function exitStatus(code: number | null, signal: NodeJS.Signals | null): number {
  if (code !== null) return code;
  if (signal) return 128 + (constants.signals[signal] ?? 0);
  return 1;
}

export interface RunWorkerOptions {
  env?: NodeJS.ProcessEnv;
  /** Inherit stdio (the CLI) or capture it (library callers). */
  stdio?: "inherit" | "pipe";
}

/**
 * Runs `iii-worker <args>` with the arguments verbatim, forwards SIGINT/SIGTERM/SIGHUP to it while it
 * runs, and resolves with its exit status.
 */
export function runWorker(args: readonly string[], options: RunWorkerOptions = {}): Promise<number> {
  const env = options.env ?? process.env;
  const command = locateWorker(env);
  if (!command) return Promise.reject(new WorkerNotFoundError(env.III_WORKER_BIN));
  return new Promise((resolve, reject) => {
    const child = spawn(command.file, [...command.prefixArgs, ...args], {
      env,
      stdio: options.stdio ?? "inherit",
    });
    const forward = (signal: NodeJS.Signals) => {
      child.kill(signal);
    };
    for (const signal of FORWARDED_SIGNALS) process.on(signal, forward);
    const detach = () => {
      for (const signal of FORWARDED_SIGNALS) process.off(signal, forward);
    };
    child.once("error", (error) => {
      detach();
      reject(error);
    });
    child.once("exit", (code, signal) => {
      detach();
      resolve(exitStatus(code, signal));
    });
  });
}

/**
 * The CLI's way: when `iii-worker` is a Node script (the installed @iii/worker's bin, or a `.js` III_WORKER_BIN),
 * it runs inside this process (process.argv set as if it had been started directly, its exit status taken from
 * process.exitCode), which saves starting a second Node (~0.1-0.3 s); anything else is spawned as runWorker does.
 */
export async function runWorkerInProcess(args: readonly string[], env: NodeJS.ProcessEnv = process.env): Promise<number> {
  const command = locateWorker(env);
  if (!command) throw new WorkerNotFoundError(env.III_WORKER_BIN);
  if (command.file !== process.execPath || command.prefixArgs.length !== 1) return runWorker(args, { env });
  const script = command.prefixArgs[0]!;
  process.argv = [process.execPath, script, ...args];
  process.exitCode = undefined;
  await import(pathToFileURL(script).href);
  return typeof process.exitCode === "number" ? process.exitCode : Number(process.exitCode ?? 0) || 0;
}
