import { accessSync, constants, readFileSync } from "node:fs";
import { createRequire } from "node:module";
import { delimiter, dirname, isAbsolute, join } from "node:path";

/** How to run `iii-worker`: the executable and the arguments that come before the user's. */
export interface WorkerCommand {
  file: string;
  prefixArgs: string[];
  source: "III_WORKER_BIN" | "@iii/worker" | "PATH";
}

function isExecutable(path: string): boolean {
  try {
    accessSync(path, constants.X_OK);
    return true;
  } catch {
    return false;
  }
}

function isFile(path: string): boolean {
  try {
    accessSync(path, constants.R_OK);
    return true;
  } catch {
    return false;
  }
}

/** A `.js`/`.mjs` bin runs with this Node so a PATH without Node 24 first still works. */
function commandFor(path: string, source: WorkerCommand["source"]): WorkerCommand {
  if (/\.[cm]?js$/.test(path)) return { file: process.execPath, prefixArgs: [path], source };
  return { file: path, prefixArgs: [], source };
}

function fromInstalledPackage(): string | undefined {
  try {
    const require = createRequire(import.meta.url);
    const manifestPath = require.resolve("@iii/worker/package.json");
    const manifest = JSON.parse(readFileSync(manifestPath, "utf8")) as { bin?: string | Record<string, string> };
    const bin = typeof manifest.bin === "string" ? manifest.bin : manifest.bin?.["iii-worker"];
    if (!bin) return undefined;
    const path = join(dirname(manifestPath), bin);
    return isFile(path) ? path : undefined;
  } catch {
    return undefined;
  }
}

/**
 * `iii-worker` in an absolute PATH entry. Empty and relative entries (`:` at either end, `.`, `bin`) are skipped:
 * they name the current directory, so `iii worker …` run in a cloned project would execute the project's own
 * `iii-worker` (Go's exec.LookPath refuses such results too).
 */
export function workerOnPath(env: NodeJS.ProcessEnv): string | undefined {
  for (const dir of (env.PATH ?? "").split(delimiter)) {
    if (!isAbsolute(dir)) continue;
    const candidate = join(dir, "iii-worker");
    if (isExecutable(candidate)) return candidate;
  }
  return undefined;
}

/**
 * Finds `iii-worker`: `III_WORKER_BIN`, then the installed `@iii/worker` package's bin, then `PATH`.
 * Returns undefined when none exists.
 */
export function locateWorker(env: NodeJS.ProcessEnv = process.env): WorkerCommand | undefined {
  const explicit = env.III_WORKER_BIN;
  if (explicit) return isFile(explicit) ? commandFor(explicit, "III_WORKER_BIN") : undefined;
  const installed = fromInstalledPackage();
  if (installed) return commandFor(installed, "@iii/worker");
  const onPath = workerOnPath(env);
  return onPath ? commandFor(onPath, "PATH") : undefined;
}
