import { accessSync, constants, existsSync, mkdtempSync, rmdirSync, statSync } from "node:fs";
import { dirname, join } from "node:path";

export function canReadWrite(path: string): string | undefined {
  try {
    accessSync(path, constants.R_OK | constants.W_OK);
    return undefined;
  } catch (error) {
    return (error as Error).message;
  }
}

/**
 * Why a directory (III_HOME) is not writable (or cannot be created), without leaving anything behind: when it
 * does not exist, a directory is made and removed in its nearest existing ancestor, because access(2) says yes
 * to root where mkdir(2) still fails (under /proc; on a read-only or full filesystem). (Node's recursive mkdir
 * spins forever under /proc, so none here; see host/mkdirs.ts.)
 */
export function writableDirError(home: string): string | undefined {
  let path = home;
  for (;;) {
    if (existsSync(path)) {
      try {
        if (!statSync(path).isDirectory()) return `${path} is not a directory`;
      } catch (error) {
        return (error as Error).message;
      }
      const error = canReadWrite(path);
      if (error) return path === home ? error : `cannot create it: ${error}`;
      if (path === home) return undefined;
      try {
        rmdirSync(mkdtempSync(join(path, ".iii-probe-")));
        return undefined;
      } catch (probe) {
        return `cannot create it: ${(probe as Error).message}`;
      }
    }
    const parent = dirname(path);
    if (parent === path) return "no existing ancestor";
    path = parent;
  }
}

