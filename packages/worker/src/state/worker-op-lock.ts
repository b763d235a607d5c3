import { existsSync } from "node:fs";
import { join } from "node:path";
import { IiiError } from "../errors.js";
import { holdFileLock, tryHoldFileLock } from "../host/file-lock.js";
import { mkdirs } from "../host/mkdirs.js";
import { iiiHome, projectKey } from "../paths.js";

/**
 * One `start` or `remove` of a worker at a time. `start` reads the worker's spec, then may pull and unpack its image
 * for minutes before its supervisor takes the worker's own lock (in the managed directory) and writes vm.json; a
 * `remove` in that window saw a stopped worker, deleted its state and its entry in iii.workers.yaml, and the start
 * then booted a VM no command could list or stop (WorkerNotFound). Both now hold this lock for their whole run:
 * `<III_HOME>/locks/<project key>/<name>.lock`, outside the worker's directory (which `remove` deletes), and not
 * under `managed/`, which a start refused by its checks leaves uncreated. The kernel drops it when its holder dies.
 * A home where it cannot be made gets no lock: the command then fails on the home with its own error.
 */
export async function holdWorkerOperation(
  name: string,
  operation: "start" | "remove",
  env: NodeJS.ProcessEnv = process.env,
  projectDir: string = process.cwd(),
): Promise<{ release: () => Promise<void> }> {
  const dir = join(iiiHome(env), "locks", projectKey(projectDir));
  try {
    await mkdirs(dir, 0o700);
  } catch {
    return { release: async () => {} };
  }
  const held = await tryHoldFileLock(join(dir, `${name}.lock`));
  if (!held) {
    throw new IiiError("WorkerRunning", `worker "${name}" is being started or removed by another command; ${operation} it again once that one is done`);
  }
  return held;
}

/**
 * Takes the worker's operation lock, waiting (up to `timeoutMs`) while a `start` or `remove` of it runs. For `stop`:
 * a start under way (checks, an image pull) has no live run to stop yet, and the stop said "not running" while the
 * start booted on (review rev6i). `onWait` is called once if it has to wait. Never in a process that holds the
 * lock itself. A home with no lock there (no start of the worker ever ran in it) or where it cannot be opened gets
 * none.
 */
export async function awaitWorkerOperation(
  name: string,
  env: NodeJS.ProcessEnv = process.env,
  projectDir: string = process.cwd(),
  options: { timeoutMs?: number; onWait?: () => void } = {},
): Promise<{ release: () => Promise<void> }> {
  const path = join(iiiHome(env), "locks", projectKey(projectDir), `${name}.lock`);
  const none = { release: async () => {} };
  if (!existsSync(path)) return none;
  let free: { release: () => Promise<void> } | undefined;
  try {
    free = await tryHoldFileLock(path);
  } catch {
    return none;
  }
  if (free) return free;
  options.onWait?.();
  return holdFileLock(path, { timeoutMs: options.timeoutMs ?? 30 * 60_000, what: `the start (or remove) of worker "${name}" under way` });
}
