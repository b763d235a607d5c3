import { realpathSync } from "node:fs";

/** Whether `inner` is `outer` or below it (both absolute, as spelled: resolve links first with realOrSelf). */
export function isWithin(outer: string, inner: string): boolean {
  return inner === outer || inner.startsWith(outer.endsWith("/") ? outer : `${outer}/`);
}

/** `path` with every link resolved, or `path` itself when it does not exist (yet). */
export function realOrSelf(path: string): string {
  try {
    return realpathSync(path);
  } catch {
    return path;
  }
}
