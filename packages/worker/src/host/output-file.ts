import { closeSync, constants, fstatSync, ftruncateSync, lstatSync, openSync, realpathSync, type Stats } from "node:fs";
import { dirname, isAbsolute, resolve, sep } from "node:path";
import { IiiError } from "../errors.js";

/**
 * A file the user names for iii to write (`start --capture FILE`), opened by a process that runs as root: the
 * supervisor writes the guest's traffic there for the whole run. A plain open (`createWriteStream`: O_CREAT|O_TRUNC,
 * links followed) let another local user who can write the file's directory (`/tmp`) choose what root writes:
 * a link at the name (`/tmp/cap.pcap -> /etc/passwd`) had the host file truncated and filled with frames the guest
 * sends, and a file they made there first received the capture for them to read (review rev6i). So:
 *
 * - every symbolic link on the way must belong to this user or root, and every directory on the way (as resolved)
 *   and above it must belong to this user or root and be writable by no one else unless sticky (others cannot
 *   rename or replace what is ours there): nobody else can redirect the path while it is opened;
 * - the name itself is opened without following a link (O_NOFOLLOW), without blocking on a FIFO, and must then be
 *   a regular file of this user with one link (not a hard link someone made to another file);
 * - a new file is 0600 (it holds the guest's traffic); an existing one of ours is emptied and reused.
 *
 * Returns the open descriptor (write-only; libuv opens close-on-exec); `/proc/self/fd/<fd>` names exactly this file.
 */
export function openOutputFile(path: string, what: string, uid: number | undefined = process.geteuid?.()): number {
  const absolute = resolve(path);
  if (uid !== undefined) checkOutputPath(absolute, what, uid);
  let fd: number;
  try {
    fd = openSync(absolute, constants.O_WRONLY | constants.O_CREAT | constants.O_NOFOLLOW | constants.O_NONBLOCK, 0o600);
  } catch (error) {
    const code = (error as NodeJS.ErrnoException).code;
    if (code === "ELOOP") throw refused(what, absolute, "it is a symbolic link", error);
    if (code === "ENXIO") throw refused(what, absolute, "it is a FIFO or socket", error);
    throw refused(what, absolute, (error as Error).message, error);
  }
  try {
    const info = fstatSync(fd);
    if (!info.isFile()) throw refused(what, absolute, "it is not a regular file");
    if (uid !== undefined && info.uid !== uid) throw refused(what, absolute, `it belongs to uid ${info.uid}, not to this user (uid ${uid}): remove it or name another file`);
    if (info.nlink !== 1) throw refused(what, absolute, `it has ${info.nlink} hard links`);
    ftruncateSync(fd, 0);
    return fd;
  } catch (error) {
    closeSync(fd);
    throw error;
  }
}

/**
 * The checks `openOutputFile` makes before it opens, without creating anything: for the CLI, so a bad path is one
 * line before a VM boots. The name itself may be missing; if present it must be a regular file of this user.
 */
export function checkOutputPath(absolute: string, what: string, uid: number | undefined = process.geteuid?.()): void {
  if (uid === undefined) return;
  if (!isAbsolute(absolute)) absolute = resolve(absolute);
  const parts = absolute.split(sep).filter((p) => p !== "");
  const name = parts.pop();
  if (name === undefined) throw refused(what, absolute, "it is not a file name");
  // Each directory on the way: a link there must be ours or root's, and what it resolves to must be safe.
  let prefix = "";
  for (const part of ["", ...parts]) {
    prefix = part === "" ? sep : prefix === sep ? `${sep}${part}` : `${prefix}${sep}${part}`;
    let info: Stats;
    try {
      info = lstatSync(prefix);
    } catch (error) {
      throw refused(what, absolute, `cannot stat ${prefix}: ${(error as Error).message}`, error);
    }
    if (info.isSymbolicLink() && info.uid !== uid && info.uid !== 0) {
      throw refused(what, absolute, `${prefix} is a symbolic link of uid ${info.uid}, who could point it elsewhere`);
    }
    let real: string;
    try {
      real = realpathSync(prefix);
    } catch (error) {
      throw refused(what, absolute, `cannot resolve ${prefix}: ${(error as Error).message}`, error);
    }
    const why = changeableDir(real, uid);
    if (why) throw refused(what, absolute, `${why}, so they could put a link or a file of theirs in its place`);
  }
  const file = lstatSync(absolute, { throwIfNoEntry: false });
  if (!file) return;
  if (file.isSymbolicLink()) throw refused(what, absolute, "it is a symbolic link");
  if (!file.isFile()) throw refused(what, absolute, "it is not a regular file");
  if (file.uid !== uid) throw refused(what, absolute, `it belongs to uid ${file.uid}, not to this user (uid ${uid}): remove it or name another file`);
  if (file.nlink !== 1) throw refused(what, absolute, `it has ${file.nlink} hard links`);
}

/** Why another user could change entries of `dir` (a real path) or of a directory above it, or undefined. */
function changeableDir(dir: string, uid: number): string | undefined {
  for (let p = dir; ; p = dirname(p)) {
    const info = lstatSync(p);
    if (!info.isDirectory()) return `${p} is not a directory`;
    if (info.uid !== uid && info.uid !== 0) return `${p} belongs to uid ${info.uid}`;
    if (othersCanWrite(info, uid) && (info.mode & 0o1000) === 0) {
      return `${p} is writable by other users and not sticky (mode ${(info.mode & 0o7777).toString(8).padStart(4, "0")})`;
    }
    if (dirname(p) === p) return undefined;
  }
}

/** As state/home-safety.ts reads it: writable by every user, or by a group other than root's and this user's own. */
function othersCanWrite(info: Stats, uid: number): boolean {
  if ((info.mode & 0o002) !== 0) return true;
  if ((info.mode & 0o020) === 0 || info.gid === 0) return false;
  return !(info.gid === process.getegid?.() && info.uid === uid);
}

function refused(what: string, path: string, why: string, cause?: unknown): IiiError {
  return new IiiError("InvalidOption", `invalid ${what}: refusing to write ${path}: ${why}`, cause === undefined ? undefined : { cause });
}
