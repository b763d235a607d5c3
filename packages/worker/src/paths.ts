import { homedir } from "node:os";
import { join, resolve } from "node:path";

/** `III_HOME`, else `~/.iii`. */
export function iiiHome(env: NodeJS.ProcessEnv = process.env): string {
  return env.III_HOME ? resolve(env.III_HOME) : join(homedir(), ".iii");
}

export const WORKERS_FILE_NAME = "iii.workers.yaml";

/** The project state file: `./iii.workers.yaml` in `cwd` (no upward search, as in iii). */
export function workersFilePath(cwd: string = process.cwd()): string {
  return join(cwd, WORKERS_FILE_NAME);
}

export function managedDir(name: string, env: NodeJS.ProcessEnv = process.env): string {
  return join(iiiHome(env), "managed", name);
}
