import { readdirSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { managedDir } from "../paths.js";
import { processStartTime, type ProcessIdentity } from "./process-identity.js";

/** The entry `start` spawns a supervisor with (launch/spawn.ts): `node <dist>/supervisor.js <name> <project-dir>`. */
const SUPERVISOR_ENTRY = /\/supervisor\.js$/;

function nulSeparated(path: string): string[] | undefined {
  try {
    return readFileSync(path, "utf8").split("\0").slice(0, -1);
  } catch {
    return undefined;
  }
}

/**
 * Whether every uid of `pid` (real, effective, saved, filesystem: /proc/<pid>/status) is `uid`. Not the owner of
 * /proc/<pid>: a process that makes itself non-dumpable (any process may) shows root as that owner.
 */
function runsAs(pid: number, uid: number): boolean {
  try {
    const line = /^Uid:\s+(.*)$/m.exec(readFileSync(`/proc/${pid}/status`, "utf8"))?.[1];
    return line !== undefined && line.trim().split(/\s+/).every((id) => Number(id) === uid);
  } catch {
    return false;
  }
}

/**
 * A live supervisor process of the worker whose state lives in `dir` (managedDir), found by its command line and
 * environment in /proc: how an exec tells "a start is under way and has not recorded its run yet" (no vm.json
 * until the supervisor has its lock and slot, the first ~0.1–0.3 s of a start) from "not running". Only this
 * user's processes count: root reads every process's command line and environment, and another local user's
 * process with the same ones (`node /tmp/x/supervisor.js NAME DIR`, III_HOME=root's) made root's exec of a stopped
 * worker wait a minute for a boot that never came (review rev6i). Undefined when there is none.
 */
export function findStartingSupervisor(name: string, dir: string): ProcessIdentity | undefined {
  let pids: string[];
  try {
    pids = readdirSync("/proc").filter((e) => /^\d+$/.test(e));
  } catch {
    return undefined;
  }
  const uid = process.geteuid?.();
  for (const entry of pids) {
    const pid = Number(entry);
    if (pid === process.pid) continue;
    if (uid !== undefined && !runsAs(pid, uid)) continue;
    const argv = nulSeparated(`/proc/${pid}/cmdline`);
    if (!argv || argv.length !== 4 || !SUPERVISOR_ENTRY.test(argv[1]!) || argv[2] !== name) continue;
    const environ = nulSeparated(`/proc/${pid}/environ`);
    if (!environ) continue;
    // Its III_HOME, else its HOME's ~/.iii (paths.ts iiiHome), read from its own environment, not ours.
    const value = (key: string) => environ.find((pair) => pair.startsWith(`${key}=`))?.slice(key.length + 1);
    const home = value("III_HOME") || (value("HOME") ? join(value("HOME")!, ".iii") : undefined);
    const env: NodeJS.ProcessEnv = home ? { III_HOME: home } : {};
    if (managedDir(name, env, argv[3]!) !== dir) continue;
    const startTime = processStartTime(pid);
    if (startTime !== undefined) return { pid, startTime };
  }
  return undefined;
}
