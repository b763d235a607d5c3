import { existsSync, readFileSync } from "node:fs";
import { basename, dirname, join, relative, sep } from "node:path";
import { fileURLToPath } from "node:url";
import { IiiError } from "../errors.js";
import type { MountSpec } from "../state/model.js";
import { packageClosure } from "../wasm/packages.js";
import { isWithin, realOrSelf } from "../util/path-within.js";
import { WORKERS_FILE_NAME } from "../paths.js";

/**
 * The host files whose change would run the guest's code on the host or in other workers: this package and every
 * package it loads (the supervisor, @iii/filesystem's server, @iii/init's init.krun that every VM boots), and the
 * programs a start runs (node, QEMU, virtiofsd).
 */
export function iiiCodePaths(programs: string[] = []): string[] {
  const self = ownPackageDir();
  const seen = new Set<string>();
  if (self) {
    const pkg = JSON.parse(readFileSync(join(self, "package.json"), "utf8")) as { dependencies?: Record<string, string> };
    for (const dep of Object.keys(pkg.dependencies ?? {})) packageClosure(dep, self, seen);
  }
  const paths = [...(self ? [self] : []), ...seen, process.execPath, ...programs];
  return [...new Set(paths.filter((p) => existsSync(p)).map(realOrSelf))];
}

/** This package's root: the nearest directory up from this module with @iii/worker's package.json. */
function ownPackageDir(): string | undefined {
  let dir = dirname(fileURLToPath(import.meta.url));
  for (;;) {
    const manifest = join(dir, "package.json");
    if (existsSync(manifest) && (JSON.parse(readFileSync(manifest, "utf8")) as { name?: string }).name === "@iii/worker") return dir;
    const parent = dirname(dir);
    if (parent === dir) return undefined;
    dir = parent;
  }
}

/** A host directory given to a guest: a VM share (virtiofs) or a WASM worker's preopened directory. */
export interface GuestShare {
  host: string;
  guest: string;
  readOnly: boolean;
}

/** What of iii's a share may not reach; each is checked when given. */
export interface IiiPaths {
  /** III_HOME: no share may overlap it, read-only or not. */
  home?: string;
  /** The project's iii.workers.yaml: no writable share may hold it. */
  projectFile?: string;
  /** Other workers' module files: no writable share may hold one. */
  otherModules?: readonly string[];
  /** Code iii runs on the host: no writable share may hold it. */
  code?: readonly string[];
}

/**
 * Refuses (InvalidOption) a share, of a VM or of a WASM worker, that reaches iii's own state or code:
 * - III_HOME holds every worker's settings (their environments), registry credentials, and the caches workers run
 *   from: the image layers that are the read-only root of every worker of an image, the transpiled component.js the
 *   WASM runner executes (a component given a mount over it rewrote it and the next start ran it, review s16). No
 *   share may overlap it, read-only or not (`-m $HOME:/home` with the default III_HOME ~/.iii did).
 * - A writable share may not hold the project's iii.workers.yaml: the guest rewrote its own entry (`mounts:
 *   [/:/host]`) and the next start honoured it (review s16).
 * - nor another WASM worker's module: the guest would replace it and run with that worker's mounts and network;
 * - nor code iii runs on the host or in other guests: a project with iii in its node_modules, shared writable, let
 *   the guest rewrite the supervisor the next start runs as root.
 */
export function assertClearOfIii(shares: readonly GuestShare[], paths: IiiPaths): void {
  const home = paths.home === undefined ? undefined : realOrSelf(paths.home);
  const projectFile = paths.projectFile === undefined ? undefined : join(realOrSelf(dirname(paths.projectFile)), basename(paths.projectFile));
  const modules = (paths.otherModules ?? []).map(realOrSelf);
  const code = (paths.code ?? []).map(realOrSelf);
  for (const s of shares) {
    const host = realOrSelf(s.host);
    const share = `cannot share ${s.host} (${s.guest})`;
    if (home !== undefined && (isWithin(host, home) || isWithin(home, host))) {
      throw new IiiError(
        "InvalidOption",
        `${share}: it overlaps III_HOME (${home}), iii's own state (other workers' settings, registry credentials, the image and code caches workers run from); share a directory outside it`,
      );
    }
    if (s.readOnly) continue;
    if (projectFile !== undefined && isWithin(host, projectFile)) {
      throw new IiiError(
        "InvalidOption",
        `${share} writable: it holds ${paths.projectFile}, where the guest could rewrite its own settings for the next start; mount it read-only (:ro) or share a subdirectory`,
      );
    }
    const other = modules.find((m) => isWithin(host, m));
    if (other) {
      throw new IiiError(
        "InvalidOption",
        `${share} writable: it holds ${other}, another worker's module, which the guest could replace to run as that worker; mount it read-only (:ro) or share a directory without it`,
      );
    }
    const held = code.find((c) => isWithin(host, c));
    if (held) {
      throw new IiiError("InvalidOption", `${share} writable: it holds ${held}, code iii runs on the host; mount it read-only (:ro) or share a directory without it`);
    }
  }
}

/** A VM's shares against III_HOME and the code iii runs (iiiCodePaths); see assertClearOfIii. */
export function assertSharesClearOfIii(mounts: readonly MountSpec[], home: string, codePaths: readonly string[]): void {
  assertClearOfIii(mounts, { home, code: codePaths });
}

/**
 * Refuses (InvalidOption) a root filesystem that contains III_HOME (`dir:/`, `dir:$HOME` with the default
 * ~/.iii): the guest would read iii's state (registry credentials, every worker's settings) in its own root.
 * An image's rootfs inside III_HOME's cache is fine: it contains nothing of iii's.
 */
export function assertRootClearOfIii(rootfs: string, home: string): void {
  const realHome = realOrSelf(home);
  if (isWithin(realOrSelf(rootfs), realHome)) {
    throw new IiiError("InvalidOption", `cannot boot ${rootfs} as the root filesystem: it contains III_HOME (${realHome}), iii's own state; use a directory outside it, or set III_HOME elsewhere`);
  }
}

/**
 * Refuses (InvalidOption) a writable share holding the project's iii.workers.yaml (at `add`, and at `start` of an
 * entry from the file). `iii worker dev` shares its project writable by design and starts from a spec of its own,
 * not from this file; its share keeps the file read-only to the guest instead (hostActedPaths).
 */
export function assertProjectFileNotShared(mounts: readonly MountSpec[], projectFile: string): void {
  assertClearOfIii(mounts, { projectFile });
}

/**
 * Entry names read-only to the guest wherever they are in a writable share (@iii/filesystem's protectedNames): any
 * project's iii.workers.yaml and its lock. hostActedPaths covers only the project the worker belongs to; a share
 * holding other projects (`-m ~/code:/code`, a monorepo's nested projects under `iii worker dev`) let the guest
 * rewrite theirs, and their next `start` ran its settings: a mount of a host directory of its choosing (review
 * rev6g). No guest has a reason to write a file of that name.
 */
export const HOST_ACTED_NAMES: readonly string[] = [WORKERS_FILE_NAME, `${WORKERS_FILE_NAME}.lock`];

/**
 * What the guest may read in a writable share but never change (@iii/filesystem's protectedPaths), as paths of
 * the share's guest view: the project's iii.workers.yaml and its lock (the next `start` would run the guest's
 * settings: `iii worker dev` shares its project, review5-s18 #9), the project's `.git` and the share's own
 * (hooks and config are code git runs on the host at the user's next commit). Only those inside the share.
 */
export function hostActedPaths(shareHost: string, projectDir: string): string[] {
  const root = realOrSelf(shareHost);
  const project = realOrSelf(projectDir);
  const named = [join(project, WORKERS_FILE_NAME), join(project, `${WORKERS_FILE_NAME}.lock`), join(project, ".git"), join(root, ".git")];
  // A name that is a link on the host (iii.workers.yaml -> config/workers.yaml) protects its target too.
  const candidates = [...named, ...named.map(realOrSelf)];
  const inside = candidates.filter((c) => c !== root && isWithin(root, c));
  return [...new Set(inside.map((c) => `/${relative(root, c).split(sep).join("/")}`))];
}
