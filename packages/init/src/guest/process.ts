// Spawning guest processes (the workload and execs): own session and process
// group, requested uid/gid/cwd/env, optionally a pty, tracked by the reaper.

import { spawn, type ChildProcess } from "node:child_process";
import { writeFileSync } from "node:fs";
import { constants as osConstants } from "node:os";
import type { Readable, Writable } from "node:stream";
import type { CgroupLeaf } from "./cgroup.js";
import { encodeHelperSpec, helperCommand, openPty, type Pty } from "./pty.js";
import type { Reaper } from "./reaper.js";

export interface ProcessSpec {
  argv: string[];
  env: Record<string, string>;
  cwd: string;
  uid: number;
  gid: number;
  /** Pipe stdin/stdout/stderr (default) or inherit init's stdout/stderr. */
  stdio: "pipe" | "inherit";
  tty?: { rows: number; cols: number } | null;
  /** The cgroup leaf the process is born in. */
  cgroup?: CgroupLeaf | null;
}

/** Init's oom_score_adj: never chosen by the OOM killer. */
export const INIT_OOM_SCORE_ADJ = -1000;
/** What the workload and execs are born with (they inherit init's otherwise). */
export const CHILD_OOM_SCORE_ADJ = 500;
let initOomProtected = false;

/** Set init's own oom_score_adj to -1000; children then get CHILD_OOM_SCORE_ADJ (see withChildOomScore). Throws on failure. */
export function protectInitFromOom(): void {
  writeFileSync("/proc/self/oom_score_adj", String(INIT_OOM_SCORE_ADJ));
  initOomProtected = true;
}

/**
 * Run a synchronous spawn with init's oom_score_adj at the children's value,
 * so the child is born with it (and, unprivileged, cannot lower it again).
 */
export function withChildOomScore<T>(fn: () => T): T {
  if (!initOomProtected) return fn();
  try {
    writeFileSync("/proc/self/oom_score_adj", String(CHILD_OOM_SCORE_ADJ));
  } catch {}
  try {
    return fn();
  } finally {
    try {
      writeFileSync("/proc/self/oom_score_adj", String(INIT_OOM_SCORE_ADJ));
    } catch {}
  }
}

export interface GuestProcess {
  child: ChildProcess;
  pid: number;
  stdin: Writable | null;
  stdout: Readable | null;
  stderr: Readable | null;
  pty: Pty | null;
  /** Resolves once the process exited: code or 128+signal. */
  exited: Promise<{ code: number; signal: string | null }>;
}

export function exitStatus(code: number | null, signal: NodeJS.Signals | null): { code: number; signal: string | null } {
  if (signal !== null) {
    const num = (osConstants.signals as Record<string, number>)[signal] ?? 0;
    return { code: 128 + num, signal };
  }
  return { code: code ?? 0, signal: null };
}

/** Signal a whole process group; false when it no longer exists. */
export function killGroup(pgid: number, signal: NodeJS.Signals | 0): boolean {
  try {
    process.kill(-pgid, signal);
    return true;
  } catch {
    return false;
  }
}

export class SpawnError extends Error {
  readonly code = "SpawnFailed";
  constructor(
    readonly argv0: string,
    readonly errnoName: string,
    message: string,
  ) {
    super(message);
    this.name = "SpawnError";
  }
}

/**
 * Spawn and wait for the 'spawn' event, so a missing binary or workdir is a
 * rejected promise rather than an exit status.
 */
export async function spawnGuestProcess(spec: ProcessSpec, reaper: Reaper): Promise<GuestProcess> {
  let pty: Pty | null = null;
  const options = {
    cwd: spec.cwd,
    env: spec.env,
    uid: spec.uid,
    gid: spec.gid,
    detached: true,
  };
  const doSpawn = (): ChildProcess => {
    if (spec.tty) {
      pty = openPty(spec.tty.rows, spec.tty.cols);
      const helper = helperCommand();
      // The helper is node: keep NODE_OPTIONS & co. of the command's env away from it.
      return spawn(helper.file, [...helper.args, encodeHelperSpec(spec.argv, spec.env)], {
        ...options,
        env: { PATH: spec.env.PATH ?? "/usr/bin:/bin" },
        stdio: [pty.slaveFd, pty.slaveFd, pty.slaveFd],
      });
    }
    return spawn(spec.argv[0]!, spec.argv.slice(1), {
      ...options,
      argv0: spec.argv[0],
      stdio: spec.stdio === "inherit" ? ["ignore", "inherit", "inherit"] : ["pipe", "pipe", "pipe"],
    });
  };
  const born = (): ChildProcess => withChildOomScore(doSpawn);
  let child: ChildProcess;
  try {
    child = spec.cgroup ? spec.cgroup.spawnInside(born) : born();
  } catch (err) {
    // Init could not join the cgroup leaf: nothing was spawned.
    (pty as Pty | null)?.closeSlave();
    (pty as Pty | null)?.master.destroy();
    throw new SpawnError(spec.argv[0]!, "ECGROUP", `${spec.argv[0]}: ${(err as Error).message}`);
  }
  reaper.track(child);
  const exited = new Promise<{ code: number; signal: string | null }>((resolve) => {
    child.once("exit", (code, signal) => resolve(exitStatus(code, signal)));
  });
  try {
    await new Promise<void>((resolve, reject) => {
      child.once("spawn", resolve);
      child.once("error", reject);
    });
  } catch (err) {
    const e = err as NodeJS.ErrnoException;
    (pty as Pty | null)?.closeSlave();
    (pty as Pty | null)?.master.destroy();
    throw new SpawnError(spec.argv[0]!, e.code ?? "EUNKNOWN", `${spec.argv[0]}: ${e.code ?? e.message} (cwd ${spec.cwd}, uid ${spec.uid})`);
  }
  // A pty's slave stays open in init (the exec server watches its input queue for end of input, tty-eof.ts)
  // until the command exits: the owner closes it then (pty.closeSlave()).
  const p = pty as Pty | null;
  return {
    child,
    pid: child.pid!,
    stdin: p ? p.master : child.stdin,
    stdout: p ? p.master : child.stdout,
    stderr: p ? null : child.stderr,
    pty: p,
    exited,
  };
}
