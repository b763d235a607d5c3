// Guest paths as libfuse's high-level API hands them to us: absolute, '/'-separated,
// already resolved by the guest kernel (no symlinks, no "." or ".." components).
// Anything else is refused before a host path is ever built from it.

const BAD_PATH = /\0|\/\/|\/\.\.?(?:\/|$)/;

/** True when `path` is a well-formed absolute guest path. */
export function isValidGuestPath(path: string): boolean {
  if (path.length === 0 || path.charCodeAt(0) !== 47 /* / */) return false;
  if (path.length > 1 && path.charCodeAt(path.length - 1) === 47) return false;
  return !BAD_PATH.test(path);
}

export type NameProblem = "empty" | "slash" | "nul" | "dot" | "dotdot" | "too-long";

/** Why a single directory entry name is unusable, or null when it is fine. */
export function nameProblem(name: string): NameProblem | null {
  if (name.length === 0) return "empty";
  if (name === ".") return "dot";
  if (name === "..") return "dotdot";
  if (name.includes("/")) return "slash";
  if (name.includes("\0")) return "nul";
  if (Buffer.byteLength(name) > 255) return "too-long";
  return null;
}

/** "/a/b/c" → ["/a/b", "c"]; "/" → ["/", ""]. */
export function splitParent(path: string): [parent: string, name: string] {
  const i = path.lastIndexOf("/");
  if (i <= 0) return ["/", path.slice(1)];
  return [path.slice(0, i), path.slice(i + 1)];
}

/** "/a/b" → "a/b"; "/" → "." (relative to the root fd). */
export function toRelative(path: string): string {
  return path === "/" ? "." : path.slice(1);
}

export function joinGuest(dir: string, name: string): string {
  return dir === "/" ? `/${name}` : `${dir}/${name}`;
}

/** True when `path` is `prefix` or lies below it. */
export function isAtOrBelow(path: string, prefix: string): boolean {
  if (prefix === "/") return true;
  return path === prefix || (path.startsWith(prefix) && path.charCodeAt(prefix.length) === 47);
}
