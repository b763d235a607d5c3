import { mkdirSync, statSync } from "node:fs";
import { mkdir, stat } from "node:fs/promises";
import { dirname } from "node:path";

/**
 * `mkdir -p` that always ends. Node's `mkdir(…, { recursive: true })` loops forever (100% CPU) when a level
 * cannot be created but its parent exists, as under /proc (mkdir gives ENOENT there, and Node retries the
 * parent, which exists, then the child again). These create one level at a time from the nearest existing
 * ancestor and throw that level's error.
 */
export function mkdirsSync(path: string, mode?: number): void {
  const missing: string[] = [];
  for (let dir = path; ; dir = dirname(dir)) {
    try {
      if (statSync(dir).isDirectory()) break;
      mkdirSync(dir); // not a directory: let mkdir raise EEXIST/ENOTDIR naming it
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code !== "ENOENT" || dirname(dir) === dir) throw error;
    }
    missing.unshift(dir);
  }
  for (const dir of missing) {
    try {
      mkdirSync(dir, mode === undefined ? undefined : { mode });
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code !== "EEXIST") throw error;
    }
  }
}

/** Async `mkdirsSync`. */
export async function mkdirs(path: string, mode?: number): Promise<void> {
  const missing: string[] = [];
  for (let dir = path; ; dir = dirname(dir)) {
    try {
      if ((await stat(dir)).isDirectory()) break;
      await mkdir(dir);
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code !== "ENOENT" || dirname(dir) === dir) throw error;
    }
    missing.unshift(dir);
  }
  for (const dir of missing) {
    try {
      await mkdir(dir, mode === undefined ? undefined : { mode });
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code !== "EEXIST") throw error;
    }
  }
}
