import { createHash } from "node:crypto";
import { realpathSync } from "node:fs";
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

/** `III_HOME/managed`: 0700, so host users cannot reach what guests wrote (upper layers, mounts, sockets). */
export function managedRoot(env: NodeJS.ProcessEnv = process.env): string {
  return join(iiiHome(env), "managed");
}

/**
 * The project a worker belongs to is the absolute (symlink-resolved) path of its `iii.workers.yaml`; its
 * managed state lives under a key derived from that path, so two projects' workers of the same name never meet.
 */
export function projectKey(projectDir: string = process.cwd()): string {
  let dir = resolve(projectDir);
  try {
    dir = realpathSync(dir);
  } catch {
    // a project dir that does not exist yet keys by its absolute path
  }
  return createHash("sha256").update(join(dir, WORKERS_FILE_NAME)).digest("hex").slice(0, 16);
}

export function managedDir(name: string, env: NodeJS.ProcessEnv = process.env, projectDir: string = process.cwd()): string {
  return join(managedRoot(env), projectKey(projectDir), name);
}

/** Every file of one managed worker (DESIGN §10). */
export interface WorkerPaths {
  dir: string;
  vmJson: string;
  lastExit: string;
  /** The supervisor's verdict on a running guest's health (supervisor/health.ts). */
  health: string;
  launch: string;
  lock: string;
  apiSock: string;
  controlSock: string;
  /** QEMU writes the guest's console here; the supervisor keeps it in consoleLog, rotated. */
  consoleSock: string;
  netSock: string;
  qmpSock: string;
  logs: string;
  stdoutLog: string;
  stderrLog: string;
  consoleLog: string;
  supervisorLog: string;
  upper: string;
  work: string;
  mnt: string;
  runtime: string;
}

export function workerPaths(name: string, env: NodeJS.ProcessEnv = process.env, projectDir: string = process.cwd()): WorkerPaths {
  const dir = managedDir(name, env, projectDir);
  const logs = join(dir, "logs");
  return {
    dir,
    vmJson: join(dir, "vm.json"),
    lastExit: join(dir, "last-exit.json"),
    health: join(dir, "health.json"),
    launch: join(dir, "launch.json"),
    lock: join(dir, "lock"),
    apiSock: join(dir, "api.sock"),
    controlSock: join(dir, "control.sock"),
    consoleSock: join(dir, "console.sock"),
    netSock: join(dir, "net.sock"),
    qmpSock: join(dir, "qmp.sock"),
    logs,
    stdoutLog: join(logs, "stdout.log"),
    stderrLog: join(logs, "stderr.log"),
    consoleLog: join(logs, "console.log"),
    supervisorLog: join(logs, "supervisor.log"),
    upper: join(dir, "upper"),
    work: join(dir, "work"),
    mnt: join(dir, "mnt"),
    runtime: join(dir, "run"),
  };
}
