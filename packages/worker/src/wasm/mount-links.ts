import { type Dirent, lstatSync, readdirSync, readlinkSync, realpathSync } from "node:fs";
import { isAbsolute, join, relative, sep } from "node:path";
import { IiiError } from "../errors.js";
import { WORKERS_FILE_NAME } from "../paths.js";
import type { WasiDir } from "./config.js";

/**
 * Preview 1 runs on node:wasi (uvwasi), which refuses `..` and a symlink as the last component but lets the host
 * kernel resolve a symlink in the middle of a path: a mounted dir holding `up -> /` gives the module the whole
 * host (`up/etc/shadow`), outside Node's permission model, whatever `:ro` says. The module cannot make such a
 * link itself (uvwasi refuses an absolute target and one that climbs with `..`), so the links that matter are the
 * host's, and they are there before the start: each mounted dir is walked (lstat, links never followed) and the
 * start refused if a symlink resolves out of it. Bounded: a dir too large to check in time is refused too.
 * Residual: a host process that plants such a link after the walk (see the README).
 *
 * A writable mount is held to more: no symlink with a `..` component at all, even one that resolves inside. The module can rename or hard-link such a link (or a directory above it) to a shallower place, where
 * the same `..` leads out (`d/up -> ..` moved to the top is the mount's parent). The links the module makes
 * itself are held to the same rule (guard.ts), so in a writable mount every link resolves below itself for the
 * whole run. A read-only mount cannot be rearranged: there the walk's verdict holds.
 */
export const MOUNT_CHECK_MAX_ENTRIES = 100_000;
export const MOUNT_CHECK_MAX_MS = 5_000;
/** Symlinks followed while resolving one link (the kernel's own limit is 40). */
const MAX_HOPS = 40;

export interface MountCheckLimits {
  maxEntries: number;
  maxMs: number;
}

const components = (path: string) => path.split(sep).filter((c) => c !== "" && c !== ".");

/** The components of `target` below `root` if it starts with `root` (or one of its spellings), else undefined. */
function below(target: string, roots: string[]): string[] | undefined {
  for (const root of roots) {
    if (target === root) return [];
    if (target.startsWith(root.endsWith(sep) ? root : root + sep)) return components(target.slice(root.length));
  }
  return undefined;
}

/**
 * Whether the symlink at `link` (inside `root`, a real path) resolves to a place inside `root`, resolving each
 * component as the kernel would (lstat, readlink), without ever leaving `root`: a `..` above it, an absolute
 * target elsewhere, or more than MAX_HOPS links count as out. Components that do not exist are taken lexically.
 */
export function linkStaysInside(root: string, link: string, spellings: string[] = []): boolean {
  const roots = [root, ...spellings];
  const resolved: string[] = [];
  const pending = components(relative(root, link));
  let hops = 0;
  let exists = true;
  while (pending.length > 0) {
    const c = pending.shift()!;
    if (c === "..") {
      if (resolved.length === 0) return false;
      resolved.pop();
      continue;
    }
    if (exists) {
      const path = join(root, ...resolved, c);
      let isLink = false;
      try {
        isLink = lstatSync(path).isSymbolicLink();
      } catch {
        exists = false; // the rest cannot be looked up: lexically from here
      }
      if (isLink) {
        if (++hops > MAX_HOPS) return false;
        const target = readlinkSync(path);
        if (isAbsolute(target)) {
          const rest = below(target, roots);
          if (!rest) return false;
          resolved.length = 0;
          pending.unshift(...rest);
        } else pending.unshift(...components(target));
        continue;
      }
    }
    resolved.push(c);
  }
  return true;
}

/** The real path of a mount's host dir; InvalidOption naming the mount when it cannot be had. */
function mountRoot(dir: WasiDir): string {
  try {
    return realpathSync(dir.hostPath);
  } catch (error) {
    throw new IiiError("InvalidOption", `mount ${dir.hostPath} (${dir.guestPath}): ${(error as Error).message}`);
  }
}

/**
 * Walks `root` depth first without following links, calling `visit` with each entry's path; throws `tooLarge()`
 * past `limits.maxEntries` entries or `limits.maxMs`, and InvalidOption naming the mount (checking `what`) when a
 * directory cannot be read.
 */
function walkMount(dir: WasiDir, root: string, limits: MountCheckLimits, what: string, tooLarge: () => IiiError, visit: (path: string, entry: Dirent) => void): void {
  const deadline = performance.now() + limits.maxMs;
  const stack = [root];
  let entries = 0;
  while (stack.length > 0) {
    const current = stack.pop()!;
    let names: Dirent[];
    try {
      names = readdirSync(current, { withFileTypes: true });
    } catch (error) {
      throw new IiiError("InvalidOption", `mount ${dir.hostPath} (${dir.guestPath}): cannot check ${current} for ${what}: ${(error as Error).message}`);
    }
    for (const entry of names) {
      if (++entries > limits.maxEntries || (entries % 256 === 0 && performance.now() > deadline)) throw tooLarge();
      const path = join(current, entry.name);
      visit(path, entry);
      if (entry.isDirectory()) stack.push(path);
    }
  }
  if (performance.now() > deadline) throw tooLarge();
}

const DEFAULT_LIMITS: MountCheckLimits = { maxEntries: MOUNT_CHECK_MAX_ENTRIES, maxMs: MOUNT_CHECK_MAX_MS };

/**
 * Walks `dir.hostPath` (links not followed) and throws InvalidOption naming the mount and the first symlink that
 * resolves out of it, or if it holds more than `maxEntries` entries or takes longer than `maxMs` to walk.
 */
export function assertNoLinksOut(dir: WasiDir, limits: MountCheckLimits = DEFAULT_LIMITS): void {
  const root = mountRoot(dir);
  const spellings = dir.hostPath === root ? [] : [dir.hostPath.replace(/\/+$/, "")];
  const tooLarge = () =>
    new IiiError(
      "InvalidOption",
      `mount ${dir.hostPath} (${dir.guestPath}) is too large to check for symlinks out of it (more than ${limits.maxEntries} entries or ${limits.maxMs / 1000} s): a preview 1 module would follow such a link to the host; mount a smaller dir`,
    );
  walkMount(dir, root, limits, "symlinks", tooLarge, (path, entry) => {
    if (!entry.isSymbolicLink()) return;
    if (!linkStaysInside(root, path, spellings)) {
      let target = "?";
      try {
        target = readlinkSync(path);
      } catch {
        // gone meanwhile; the name is enough
      }
      throw new IiiError(
        "InvalidOption",
        `mount ${dir.hostPath} (${dir.guestPath}): ${relative(root, path)} is a symlink to ${target}, out of the mount; a preview 1 module would follow it to the host (node:wasi resolves symlinks inside a path): remove it, or mount its target instead`,
      );
    }
    if (!dir.readOnly) {
      let target: string | undefined;
      try {
        target = readlinkSync(path);
      } catch {
        // gone meanwhile
      }
      // absolute ones too: `/m/sub/../x` climbs out once the module replaces the dir `sub` with `sub -> .`
      if (target !== undefined && target.split(sep).includes("..")) {
        throw new IiiError(
          "InvalidOption",
          `mount ${dir.hostPath} (${dir.guestPath}): ${relative(root, path)} is a symlink to ${target}, which climbs with ..; in a writable mount a preview 1 module could move it (or a dir above it) to where it leads out: remove it, mount the dir read-only (:ro), or run a component`,
        );
      }
    }
  });
}

/** Names a writable mount may not hold anywhere: an iii project's workers file and its lock. */
const WORKERS_FILE_NAMES: ReadonlySet<string> = new Set([WORKERS_FILE_NAME, `${WORKERS_FILE_NAME}.lock`]);

/**
 * A writable mount may hold no iii project's `iii.workers.yaml` (nor its lock), at any depth: the module could
 * rewrite that project's workers, and the project's next `start` would run them, a mount of any host directory
 * included (review rev6g: `--mount ~/code:/code` and `/code/p1/iii.workers.yaml`). VM shares make such files
 * read-only in the FUSE view (protectedNames); WASM mounts are the host's own directories, so the start is refused
 * instead. Walked without following links, bounded as assertNoLinksOut. Residual: a file of that name the module
 * creates where none was (a directory that was no project), and one a host process puts there after the walk.
 */
export function assertNoWorkersFiles(dir: WasiDir, limits: MountCheckLimits = DEFAULT_LIMITS): void {
  if (dir.readOnly) return;
  const root = mountRoot(dir);
  const tooLarge = () =>
    new IiiError(
      "InvalidOption",
      `writable mount ${dir.hostPath} (${dir.guestPath}) is too large to check for iii projects' ${WORKERS_FILE_NAME} (more than ${limits.maxEntries} entries or ${limits.maxMs / 1000} s): mount it read-only (:ro) or a smaller dir`,
    );
  walkMount(dir, root, limits, WORKERS_FILE_NAME, tooLarge, (path, entry) => {
    if (!WORKERS_FILE_NAMES.has(entry.name)) return;
    throw new IiiError(
      "InvalidOption",
      `writable mount ${dir.hostPath} (${dir.guestPath}) holds ${relative(root, path)}, an iii project's workers file: the module could rewrite that project's workers for its next start; mount it read-only (:ro) or a directory without one`,
    );
  });
}
