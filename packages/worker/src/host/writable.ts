import { accessSync, constants, existsSync, statSync } from "node:fs";
import { dirname } from "node:path";

export function canReadWrite(path: string): string | undefined {
  try {
    accessSync(path, constants.R_OK | constants.W_OK);
    return undefined;
  } catch (error) {
    return (error as Error).message;
  }
}

/**
 * Why a directory (III_HOME) is not (or can be created) writable, without creating it: the nearest existing ancestor
 * must be a writable directory. (Node's recursive mkdir can spin forever under /proc, so none here.)
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
      return error ? (path === home ? error : `cannot create it: ${error}`) : undefined;
    }
    const parent = dirname(path);
    if (parent === path) return "no existing ancestor";
    path = parent;
  }
}

