import { constants } from "node:os";

const E = constants.errno;

/** Negative Linux errno values, as FUSE replies carry them. */
export const Errno = {
  EPERM: -E.EPERM,
  ENOENT: -E.ENOENT,
  EIO: -E.EIO,
  EBADF: -E.EBADF,
  EACCES: -E.EACCES,
  EEXIST: -E.EEXIST,
  EXDEV: -E.EXDEV,
  ENOTDIR: -E.ENOTDIR,
  EISDIR: -E.EISDIR,
  EINVAL: -E.EINVAL,
  EROFS: -E.EROFS,
  ENOTEMPTY: -E.ENOTEMPTY,
  ELOOP: -E.ELOOP,
  ENODATA: -E.ENODATA,
  ERANGE: -E.ERANGE,
  ENOSYS: -E.ENOSYS,
  EOPNOTSUPP: -E.EOPNOTSUPP,
  ENAMETOOLONG: -E.ENAMETOOLONG,
  ENOSPC: -E.ENOSPC,
} as const;

const names = new Map<number, string>(Object.entries(E).map(([k, v]) => [-v, k]));

export function errnoName(errno: number): string {
  return names.get(errno) ?? `E${-errno}`;
}

/** An operation failure carrying a negative errno; cheap to throw inside FUSE handlers. */
export class ErrnoError extends Error {
  readonly errno: number;
  constructor(errno: number, op: string) {
    super(`${op}: ${errnoName(errno)}`);
    this.errno = errno;
  }
}

/** The negative errno of anything thrown by Node's fs or our libc wrappers; EIO otherwise. */
export function toErrno(err: unknown): number {
  if (typeof err === "object" && err !== null) {
    const n = (err as { errno?: unknown }).errno;
    if (typeof n === "number" && n < 0) return n;
  }
  return Errno.EIO;
}

export function fail(errno: number, op: string): never {
  throw new ErrnoError(errno, op);
}
