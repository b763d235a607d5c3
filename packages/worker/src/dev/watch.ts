import { watch, type FSWatcher } from "node:fs";
import { lstat, readdir, realpath } from "node:fs/promises";
import { join, relative, resolve, sep } from "node:path";
import { INSTALL_INPUTS } from "./project.js";

/** Directories never watched: dependencies, VCS, build output, the venv and the dev cache (written by the guest). */
export const IGNORED_DIRS: ReadonlySet<string> = new Set([
  "node_modules",
  ".git",
  "dist",
  ".venv",
  ".iii",
  "__pycache__",
  ".pytest_cache",
  ".mypy_cache",
]);

// Editor droppings: vim swap files and its 4913 write probe, emacs lock and backup files.
const IGNORED_FILE = /(?:^|\/)(?:\.[^/]*\.sw[a-p]x?|4913|\.#[^/]*|[^/]*~)$/;

const ALL_INSTALL_INPUTS: ReadonlySet<string> = new Set(Object.values(INSTALL_INPUTS).flat());

export type ChangeKind = "install-input" | "source" | "ignored";

/**
 * Classifies a project-relative path (`/`-separated). Install inputs are the manifest, package.json, lockfiles,
 * pyproject.toml and requirements.txt at the project root; a file of the same name deeper down is source.
 */
export function classifyChange(relativePath: string, installInputs: ReadonlySet<string> = ALL_INSTALL_INPUTS): ChangeKind {
  const path = relativePath.split(sep).join("/").replace(/^\.\//, "");
  if (path === "" || path.split("/").some((segment) => IGNORED_DIRS.has(segment))) return "ignored";
  if (IGNORED_FILE.test(path)) return "ignored";
  return installInputs.has(path) ? "install-input" : "source";
}

export interface WatchProjectOptions {
  /** Source files changed (and no install input in the same batch). Paths are project-relative. */
  onSource?: (paths: string[]) => void;
  /**
   * An install input changed. The batch's other changed paths are in `allPaths`; re-running install restarts
   * the workload anyway, so `onSource` is not called for that batch.
   */
  onInstallInput?: (installInputs: string[], allPaths: string[]) => void;
  /** Quiet time after the last change before the callback runs. Default 100 ms. */
  debounceMs?: number;
  /** Upper bound on how long a stream of changes can delay the callback. Default 1000 ms. */
  maxWaitMs?: number;
  /** Names counted as install inputs (root-relative). Default: every language's INSTALL_INPUTS. */
  installInputs?: readonly string[];
  /** A directory could not be watched (e.g. out of inotify watches). Without it such errors are dropped. */
  onError?: (error: Error) => void;
  /**
   * At most this many directories are watched (one inotify watch each). Default WATCH_MAX_DIRECTORIES. The dev
   * guest writes the project: without a bound, making 195,000 directories took every inotify watch the user
   * may hold (max_user_watches; the user's editors, build tools and, for root, system daemons then fail with
   * ENOSPC) and 450 MiB of the CLI's memory.
   */
  maxDirectories?: number;
  /** Called once when `maxDirectories` is reached: directories past it are not watched. */
  onLimit?: (maxDirectories: number) => void;
}

/** Directories watched per project by default: far above a source tree's (dependencies, VCS and build output are not watched), far below max_user_watches. */
export const WATCH_MAX_DIRECTORIES = 10_000;

export interface ProjectWatcher {
  close(): void;
  /** Resolves once the initial tree walk has put a watch on every directory. */
  readonly ready: Promise<void>;
}

/**
 * Watches a project on the host for `iii worker dev`. It walks the tree itself and puts one non-recursive
 * `fs.watch` on each directory that is not ignored: `fs.watch({recursive: true})` on Linux would also descend
 * into node_modules and .venv, which costs an inotify watch per directory there and floods events during
 * install. New directories are picked up as they appear.
 *
 * The dev guest writes this tree, so it never leads the watcher out of it: a symbolic link is not a directory
 * here (lstat, and the walk's Dirent types), and a directory is kept only if its real path is still where the
 * walk expects it (a link swapped in for a parent after the check). Otherwise `ln -s / x` in the guest would
 * put an inotify watch on every directory of the host (exhausting the user's `max_user_watches`) and turn
 * host file events into workload restarts.
 */
export function watchProject(dir: string, options: WatchProjectOptions = {}): ProjectWatcher {
  const root = resolve(dir);
  const debounceMs = options.debounceMs ?? 100;
  const maxWaitMs = options.maxWaitMs ?? 1000;
  const installInputs = new Set(options.installInputs ?? ALL_INSTALL_INPUTS);
  const watchers = new Map<string, FSWatcher>();
  const maxDirectories = options.maxDirectories ?? WATCH_MAX_DIRECTORIES;
  /** Watches created and not yet kept or dropped (their checks are in flight): they hold inotify watches too. */
  let pending = 0;
  let limitReported = false;
  let realRoot = root;
  const changed = new Set<string>();
  let quietTimer: NodeJS.Timeout | undefined;
  let maxTimer: NodeJS.Timeout | undefined;
  let closed = false;

  const reportError = (error: unknown): void => {
    if (closed) return;
    const err = error instanceof Error ? error : new Error(String(error));
    if (options.onError) options.onError(err);
  };

  const flush = (): void => {
    clearTimeout(quietTimer);
    clearTimeout(maxTimer);
    quietTimer = maxTimer = undefined;
    if (closed || changed.size === 0) return;
    const paths = [...changed].sort();
    changed.clear();
    const inputs = paths.filter((p) => classifyChange(p, installInputs) === "install-input");
    if (inputs.length > 0) options.onInstallInput?.(inputs, paths);
    else options.onSource?.(paths);
  };

  const record = (relativePath: string): void => {
    if (closed || classifyChange(relativePath, installInputs) === "ignored") return;
    changed.add(relativePath);
    clearTimeout(quietTimer);
    quietTimer = setTimeout(flush, debounceMs);
    maxTimer ??= setTimeout(flush, maxWaitMs);
  };

  const watchDirectory = async (absolute: string, announce: boolean): Promise<void> => {
    if (closed || watchers.has(absolute)) return;
    const rel = relative(root, absolute);
    if (rel !== "" && classifyChange(rel, installInputs) === "ignored") return;
    if (watchers.size + pending >= maxDirectories) {
      if (!limitReported) options.onLimit?.(maxDirectories);
      limitReported = true;
      return;
    }
    let watcher: FSWatcher;
    try {
      watcher = watch(absolute, { persistent: true }, (_event, filename) => {
        if (filename === null) return;
        const child = join(absolute, filename.toString());
        const childRel = relative(root, child);
        record(childRel);
        // A new directory (or one renamed into place) needs its own watch; a removed one loses its watch.
        // lstat: a link the guest planted is never followed, whatever it points to.
        void lstat(child).then(
          (info) => {
            if (info.isDirectory()) return watchDirectory(child, true);
            unwatchBelow(child);
          },
          () => unwatchBelow(child),
        );
      });
    } catch (error) {
      // The directory vanished between listing and watching: nothing to watch.
      if ((error as NodeJS.ErrnoException).code !== "ENOENT") reportError(error);
      return;
    }
    watcher.on("error", (error) => {
      unwatchBelow(absolute);
      if ((error as NodeJS.ErrnoException).code !== "ENOENT") reportError(error);
    });
    // fs.watch follows links in the path it is given: checked after the watch exists, so a link swapped in
    // before it was added is caught too (the watch is dropped at once). A directory listed through such a
    // link below is checked again, each on its own, so the walk never leaves the project.
    pending += 1;
    const real = await realpath(absolute).catch(() => undefined);
    pending -= 1;
    if (rel === "" && real !== undefined) realRoot = real;
    if (closed || watchers.has(absolute) || real === undefined || real !== join(realRoot, rel)) {
      watcher.close();
      return;
    }
    watchers.set(absolute, watcher);
    let entries;
    try {
      entries = await readdir(absolute, { withFileTypes: true });
    } catch {
      return;
    }
    for (const entry of entries) {
      const child = join(absolute, entry.name);
      if (entry.isDirectory()) await watchDirectory(child, announce);
      // Files created in a new directory before its watch existed are changes too.
      else if (announce) record(relative(root, child));
    }
  };

  const unwatchBelow = (absolute: string): void => {
    for (const [path, watcher] of watchers) {
      if (path === absolute || path.startsWith(absolute + sep)) {
        watcher.close();
        watchers.delete(path);
      }
    }
  };

  const ready = watchDirectory(root, false).catch(reportError);

  return {
    ready,
    close: () => {
      closed = true;
      clearTimeout(quietTimer);
      clearTimeout(maxTimer);
      for (const watcher of watchers.values()) watcher.close();
      watchers.clear();
      changed.clear();
    },
  };
}
