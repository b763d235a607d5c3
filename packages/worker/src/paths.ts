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

/** Every file of one managed worker (DESIGN §10). */
export interface WorkerPaths {
  dir: string;
  vmJson: string;
  lastExit: string;
  launch: string;
  lock: string;
  apiSock: string;
  controlSock: string;
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

export function workerPaths(name: string, env: NodeJS.ProcessEnv = process.env): WorkerPaths {
  const dir = managedDir(name, env);
  const logs = join(dir, "logs");
  return {
    dir,
    vmJson: join(dir, "vm.json"),
    lastExit: join(dir, "last-exit.json"),
    launch: join(dir, "launch.json"),
    lock: join(dir, "lock"),
    apiSock: join(dir, "api.sock"),
    controlSock: join(dir, "control.sock"),
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
