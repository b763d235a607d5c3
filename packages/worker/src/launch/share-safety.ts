import { existsSync, readFileSync } from "node:fs";
import { basename, dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { IiiError } from "../errors.js";
import type { MountSpec } from "../state/model.js";
import { packageClosure } from "../wasm/packages.js";
import { isWithin, realOrSelf } from "../util/path-within.js";



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

/**
 * Refuses (InvalidOption) a share that reaches iii's own state or code. III_HOME holds every worker's launch
 * spec (their environments), registry credentials, and the image cache whose layers are the read-only root of
 * every worker of the image: no share may overlap it, read-only or not (`-m $HOME:/home` with the default
 * III_HOME ~/.iii did). A writable share may also not hold code iii runs on the host or in other VMs (a project
 * with iii installed in its node_modules, shared writable, let the guest rewrite the supervisor the next start
 * runs as root).
 */
export function assertSharesClearOfIii(mounts: readonly MountSpec[], home: string, codePaths: readonly string[]): void {
  const realHome = realOrSelf(home);
  for (const m of mounts) {
    const host = realOrSelf(m.host);
    if (isWithin(host, realHome) || isWithin(realHome, host)) {
      throw new IiiError(
        "InvalidOption",
        `cannot share ${m.host} (${m.guest}): it overlaps III_HOME (${realHome}), iii's own state (other workers' settings, registry credentials, the image cache every worker boots from); share a directory outside it`,
      );
    }
    if (m.readOnly) continue;
    const code = codePaths.find((c) => isWithin(host, c));
    if (code) {
      throw new IiiError(
        "InvalidOption",
        `cannot share ${m.host} (${m.guest}) writable: it holds ${code}, code iii runs on the host; mount it read-only (:ro) or share a directory without it`,
      );
    }
  }
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
 * Refuses (InvalidOption) a writable share holding the project's iii.workers.yaml: the guest could rewrite its own
 * entry (`-m /:/host`, `--network public`) and the next `start` would give it that. `iii worker dev` shares its
 * project writable by design and starts from a spec of its own, not from this file.
 */
export function assertProjectFileNotShared(mounts: readonly MountSpec[], projectFile: string): void {
  const file = join(realOrSelf(dirname(projectFile)), basename(projectFile));
  for (const m of mounts) {
    if (!m.readOnly && isWithin(realOrSelf(m.host), file)) {
      throw new IiiError(
        "InvalidOption",
        `cannot share ${m.host} (${m.guest}) writable: it holds ${projectFile}, where the guest could rewrite its own settings for the next start; mount it read-only (:ro) or share a subdirectory`,
      );
    }
  }
}
