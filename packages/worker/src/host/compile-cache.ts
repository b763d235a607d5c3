import { enableCompileCache } from "node:module";
import { lstatSync, mkdirSync, realpathSync } from "node:fs";
import { homedir } from "node:os";
import { dirname, isAbsolute, join } from "node:path";

/**
 * Node's on-disk compile cache (`module.enableCompileCache()`) holds V8 code caches that Node loads *instead of*
 * compiling a module's source: it checks only the source's size and CRC32, both computable from the world-readable
 * source, so whoever can write an entry runs code in every later process that loads that module. With no argument
 * the cache lives in `$TMPDIR/node-compile-cache/<version>-<uid>/`, and Node neither checks who owns that directory
 * nor creates it private: another local user who makes `/tmp/node-compile-cache` first (after every reboot it is
 * free) plants an entry for `@iii/worker`'s cli.js and runs code as the next user — root included — who runs
 * `iii worker …` or `iii-worker …` (shown with uid 65534 against root: test/cli/compile-cache.test.ts).
 *
 * So the cache goes in `${XDG_CACHE_HOME:-~/.cache}/iii/node-compile-cache`, and only when that directory and every
 * directory above it belongs to this user or root and is writable by no one else (a sticky directory such as /tmp
 * excepted above the last level): `sudo` keeping another user's HOME, a shared XDG_CACHE_HOME or a link into
 * someone else's tree turns the cache off (it only saves start-up time) rather than trusting it.
 * `NODE_COMPILE_CACHE` set by the user is theirs: Node has enabled it before this code runs.
 */
export function compileCacheDir(env: NodeJS.ProcessEnv = process.env, uid: number | undefined = process.geteuid?.()): string | undefined {
  if (uid === undefined || env.NODE_DISABLE_COMPILE_CACHE || env.NODE_COMPILE_CACHE) return undefined;
  const xdg = env.XDG_CACHE_HOME;
  let home: string;
  try {
    home = homedir();
  } catch {
    return undefined;
  }
  const base = xdg && isAbsolute(xdg) ? xdg : join(home, ".cache");
  const dir = join(base, "iii", "node-compile-cache");
  try {
    // Nothing is created under a directory someone else could rearrange.
    let existing = dir;
    while (!lstatSync(existing, { throwIfNoEntry: false })) existing = dirname(existing);
    if (!trustedChain(realpathSync(existing), uid, false)) return undefined;
    mkdirSync(dir, { recursive: true, mode: 0o700 });
    const real = realpathSync(dir);
    return trustedChain(real, uid, true) ? real : undefined;
  } catch {
    return undefined;
  }
}

/**
 * `path` (a real path, so no links in it) and every directory above it are owned by `uid` or root; `path` itself,
 * when it is the cache directory (`isCache`), by `uid` and writable by no one else; a directory above it may be
 * group- or world-writable only when sticky (others cannot rename what is ours there).
 */
function trustedChain(path: string, uid: number, isCache: boolean): boolean {
  for (let p = path, top = true; ; p = dirname(p), top = false) {
    const info = lstatSync(p);
    if (!info.isDirectory() || (info.uid !== uid && info.uid !== 0)) return false;
    const othersWrite = (info.mode & 0o022) !== 0;
    if (top && isCache) {
      if (info.uid !== uid || othersWrite) return false;
    } else if (othersWrite && (info.mode & 0o1000) === 0) return false;
    if (p === dirname(p)) return true;
  }
}

/**
 * Turns Node's compile cache on in the directory `compileCacheDir` approves, and hands the choice to the processes
 * `iii-worker` starts (the supervisor, the filesystem server), which never enable one themselves:
 * `NODE_COMPILE_CACHE` names the approved directory (Node enables it at their start), or
 * `NODE_DISABLE_COMPILE_CACHE=1` when there is none.
 */
export function enableSafeCompileCache(env: NodeJS.ProcessEnv = process.env): string | undefined {
  if (env.NODE_COMPILE_CACHE || env.NODE_DISABLE_COMPILE_CACHE) return undefined;
  const dir = compileCacheDir(env);
  if (dir === undefined) {
    env.NODE_DISABLE_COMPILE_CACHE = "1";
    return undefined;
  }
  enableCompileCache?.(dir);
  env.NODE_COMPILE_CACHE = dir;
  return dir;
}
