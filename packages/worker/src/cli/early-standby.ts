// `start <name>`'s standby supervisor, spawned by cli.ts before commander and the command modules load: the
// supervisor's and its FUSE server's Node start-up then overlap the CLI's own module loading as well as its
// checks. Imports nothing at load time (launch/spawn.js and paths.js load only for a `start`).
import type { StandbySupervisor } from "../launch/spawn.js";

/** Options of `start` (and the program's) that take a value: the token after them is no worker name. */
export const START_VALUE_OPTIONS: readonly string[] = ["--engine-url", "--boot-timeout", "--pull", "--capture"];

/** A worker name as state/model.ts WORKER_NAME has it (checked here without loading the model's imports). */
const WORKER_NAME = /^[a-z0-9][a-z0-9._-]{0,62}$/;

/**
 * The worker of a `start` with exactly one valid name in `argv` (global options may come first), else undefined:
 * help and version requests, several names, another command. Only a guess made before commander parses `argv`:
 * the standby it starts does nothing until `start` has checked everything and says `go`, and ends when not claimed.
 */
export function startNameOf(argv: readonly string[]): string | undefined {
  let i = 0;
  while (argv[i] === "--debug") i++;
  if (argv[i] !== "start") return undefined;
  const names: string[] = [];
  for (i++; i < argv.length; i++) {
    const token = argv[i]!;
    if (token === "--") {
      names.push(...argv.slice(i + 1));
      break;
    }
    if (token === "-h" || token === "--help" || token === "-V" || token === "--version") return undefined;
    if (token.startsWith("-")) {
      if (START_VALUE_OPTIONS.includes(token)) i++;
      continue;
    }
    names.push(token);
  }
  return names.length === 1 && WORKER_NAME.test(names[0]!) ? names[0] : undefined;
}

/** Spawns the worker's supervisor in standby (launch/spawn.ts); undefined when the worker never ran here. */
export async function spawnStandby(name: string): Promise<StandbySupervisor | undefined> {
  if (!WORKER_NAME.test(name)) return undefined;
  const [{ spawnStandbySupervisor }, { workerPaths }] = await Promise.all([import("../launch/spawn.js"), import("../paths.js")]);
  const projectDir = process.cwd();
  return spawnStandbySupervisor({ name, projectDir, paths: workerPaths(name, process.env, projectDir) });
}

let early: { name: string; standby: StandbySupervisor | undefined } | undefined;

/** cli.ts, first thing: a `start` of one worker spawns its standby supervisor now. */
export async function spawnEarlyStandby(argv: readonly string[]): Promise<void> {
  const name = startNameOf(argv);
  if (name === undefined) return;
  early = { name, standby: undefined };
  early.standby = await spawnStandby(name).catch(() => undefined);
}

/**
 * `start`: the standby spawned early for `name`, handed over once (the caller owns it then, and aborts it when it
 * is not used); undefined when there is none for that name, and then any other early one is aborted.
 */
export function claimEarlyStandby(name: string | undefined): StandbySupervisor | undefined {
  const e = early;
  early = undefined;
  if (e && e.name === name) return e.standby;
  e?.standby?.abort();
  return undefined;
}

/** cli.ts, at the end: a standby nobody claimed (a usage error, say) ends now, having created nothing. */
export function abortEarlyStandby(): void {
  claimEarlyStandby(undefined);
}
