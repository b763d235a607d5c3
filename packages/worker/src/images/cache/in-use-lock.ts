import { AsyncLocalStorage } from "node:async_hooks";
import { join, resolve } from "node:path";
import { IiiError } from "../../errors.js";
import { holdFileLock } from "../../host/file-lock.js";
import { mkdirs } from "../../host/mkdirs.js";

/**
 * `prune` against the commands that use the image cache. A pull writes blobs and an image directory that no
 * worker names yet, and a `start` uses an image before its launch.json (which prune reads) names it: a prune in
 * between deleted a blob a pull had just downloaded, or the image under a starting worker. Pulls and starts hold
 * this lock shared for their whole run; prune takes it exclusive, without waiting for a start that may pull for
 * minutes. The kernel drops it when its holder dies.
 */
function lockPath(home: string): string {
  return join(home, "locks", "images-in-use.lock");
}

// A home where the lock cannot be made gets none: the command then fails on the home with its own error.
const NOT_HELD = { release: async () => {} };

async function madeLocksDir(home: string): Promise<boolean> {
  try {
    await mkdirs(join(home, "locks"), 0o700);
    return true;
  } catch {
    return false;
  }
}

/** Held shared by a pull or a start; waits (up to 60 s) only for a prune in progress. */
export async function holdImagesInUse(home: string): Promise<{ release: () => Promise<void> }> {
  if (!(await madeLocksDir(home))) return NOT_HELD;
  return holdFileLock(lockPath(home), { shared: true, timeoutMs: 60_000, what: "a prune of the image cache to finish" });
}

/** The shared hold the current async call chain runs under (withImagesInUse), while its holder has not returned. */
const holding = new AsyncLocalStorage<{ path: string; released: boolean }>();

/**
 * Runs `fn` holding the cache shared. A call nested in `fn` for the same home (a start's ensureImage) runs under
 * the hold already taken instead of opening and flocking the lock again: one hold per start, and since the outer
 * hold ends only when the whole start returns, there is no moment between the image's resolution and its use when
 * a prune could take the lock. Keyed on the async call chain, not the process: unrelated work in the same process
 * (a library caller's concurrent pulls) takes its own hold.
 */
export async function withImagesInUse<T>(home: string, fn: () => Promise<T>): Promise<T> {
  const path = lockPath(resolve(home));
  const current = holding.getStore();
  if (current && !current.released && current.path === path) return fn();
  const held = await holdImagesInUse(home);
  const mark = { path, released: false };
  try {
    return await holding.run(mark, fn);
  } finally {
    // Work fn started and left running (a timer) keeps this store: it must not count as holding once we let go.
    mark.released = true;
    await held.release();
  }
}

/** Held exclusive by prune: fails at once (StateLockTimeout) while a pull or start uses the cache. */
export async function holdImagesForPrune(home: string): Promise<{ release: () => Promise<void> }> {
  if (!(await madeLocksDir(home))) return NOT_HELD;
  try {
    return await holdFileLock(lockPath(home), { timeoutMs: 0 });
  } catch (error) {
    if ((error as IiiError).code !== "StateLockTimeout") throw error;
    throw new IiiError("StateLockTimeout", "a pull or a start is using the image cache; nothing was removed: prune again once it is done", { cause: error });
  }
}
