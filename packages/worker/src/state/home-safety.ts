import { lstatSync, readdirSync, realpathSync, statSync, type Stats } from "node:fs";
import { dirname, join } from "node:path";
import { errnoCode, IiiError } from "../errors.js";

/**
 * III_HOME holds registry credentials (auth.json), the image cache every worker boots from, and `managed/`, whose
 * paths `remove` deletes recursively and `start` chmods. Whoever can write III_HOME or a directory above it can
 * swap any of that for a link or a file of theirs, and this process (root, for VMs) then reads, writes, chowns or
 * deletes through it: write-file-atomic gives a rewritten file the owner of the one it replaces (auth.json handed
 * to that user), follows a link at the name, and `rm -r` of `managed/<project>/<name>` follows a linked
 * `<project>`. So, as ssh does with ~/.ssh: III_HOME and every directory above it must belong to this user or root,
 * III_HOME must not be writable by anyone else, and a directory above it writable by others must be sticky
 * (/tmp), where others cannot rename or replace what is ours.
 */
export function checkHomeSafe(home: string, uid: number | undefined = process.geteuid?.()): void {
  if (uid === undefined) return; // not POSIX: no owners to compare
  let real: string;
  try {
    real = realpathSync(home);
  } catch (error) {
    // Under a file, behind a loop or a directory we cannot search: the command fails on it with its own error.
    if (errnoCode(error) !== "ENOENT") return;
    // Not there yet: where it will be made must be safe. Whoever makes it (mkdirs, 0700) checks again after.
    let parent: string;
    try {
      parent = realpathSync(nearestExisting(dirname(home)));
    } catch (inner) {
      throw unsafe(home, `cannot check the directories above it: ${(inner as Error).message}`, inner);
    }
    checkAncestors(home, parent, uid);
    return;
  }
  const stats = statOf(home, real);
  if (!stats.isDirectory()) throw unsafe(home, `${real} is not a directory`);
  if (stats.uid !== uid && stats.uid !== 0) throw unsafe(home, `${real} belongs to uid ${stats.uid}, not to this user (uid ${uid})`);
  if (stats.uid !== uid && uid !== 0) return; // root's directory used by another user: it cannot write it anyway
  if (othersCanWrite(stats)) {
    throw unsafe(home, `${real} is writable by ${stats.mode & 0o002 ? "every user" : `its group (gid ${stats.gid})`} (mode ${modeText(stats)}); chmod go-w ${real}`);
  }
  checkAncestors(home, dirname(real), uid);
}

function checkAncestors(home: string, from: string, uid: number): void {
  const why = ancestorsChangeableBy(from, uid, (dir, error) => unsafe(home, `cannot stat ${dir}: ${error.message}`, error));
  if (why) throw unsafe(home, `${why.dir} above it ${why.reason}, so they could replace III_HOME`);
}

/** The first directory from `from` up to / that someone other than `uid` and root could change an entry of. */
function ancestorsChangeableBy(from: string, uid: number, failed: (dir: string, error: Error) => Error): { dir: string; reason: string } | undefined {
  for (let dir = from; ; dir = dirname(dir)) {
    let stats: Stats;
    try {
      stats = statSync(dir);
    } catch (error) {
      throw failed(dir, error as Error);
    }
    if (stats.uid !== uid && stats.uid !== 0) return { dir, reason: `belongs to uid ${stats.uid}` };
    if (othersCanWrite(stats) && (stats.mode & 0o1000) === 0) return { dir, reason: `is writable by other users and not sticky (mode ${modeText(stats)})` };
    if (dirname(dir) === dir) return undefined;
  }
}

/**
 * Why a file this process will read more than once (a layer of an `oci:` layout: checked against its digest, then
 * read again to unpack) could be changed in between by a user other than this one and root, or undefined.
 */
export function changeableByOthers(path: string, uid: number | undefined = process.geteuid?.()): string | undefined {
  if (uid === undefined) return undefined;
  const stats = lstatSync(path);
  if (!stats.isFile()) return `${path} is not a regular file`;
  if (stats.uid !== uid && stats.uid !== 0) return `${path} belongs to uid ${stats.uid}`;
  if (othersCanWrite(stats)) return `${path} is writable by other users (mode ${modeText(stats)})`;
  const why = ancestorsChangeableBy(dirname(realpathSync(path)), uid, (_dir, error) => error);
  return why ? `${why.dir} ${why.reason}` : undefined;
}

/**
 * Why a directory this process boots as a VM's root (a `dir:` rootfs, used in place) could be changed by a user other
 * than this one and root, or undefined: the directory itself must be this user's or root's and writable by no one
 * else, and so must every directory above it (sticky allowed); its top-level entries writable by no one else (a
 * directory may be if sticky, as an image's /tmp is). Their owners are not checked: an unpacked image keeps the uids
 * it declares (a /srv of uid 1000), which may or may not be a user of this host. Deeper entries are not walked.
 */
export function rootfsChangeableByOthers(dir: string, uid: number | undefined = process.geteuid?.()): string | undefined {
  if (uid === undefined) return undefined;
  const real = realpathSync(dir);
  const top = lstatSync(real);
  if (top.uid !== uid && top.uid !== 0) return `${real} belongs to uid ${top.uid}`;
  if (othersCanWrite(top)) return `${real} is writable by other users (mode ${modeText(top)})`;
  for (const name of readdirSync(real)) {
    const path = join(real, name);
    const entry = lstatSync(path);
    if (!entry.isSymbolicLink() && othersCanWrite(entry) && !(entry.isDirectory() && (entry.mode & 0o1000) !== 0)) {
      return `${path} is writable by other users (mode ${modeText(entry)})`;
    }
  }
  if (dirname(real) === real) return undefined;
  const why = ancestorsChangeableBy(dirname(real), uid, (_dir, error) => error);
  return why ? `${why.dir} ${why.reason}` : undefined;
}

/** Throws (ImageInvalid) when a `dir:` rootfs could be changed by another user (rootfsChangeableByOthers). */
export function assertRootfsOnlyOurs(path: string, image: string): void {
  let why: string | undefined;
  try {
    why = rootfsChangeableByOthers(path);
  } catch (error) {
    throw new IiiError("RootfsNotFound", `${image}: cannot check ${path}: ${(error as Error).message}`, { cause: error });
  }
  if (why) throw new IiiError("ImageInvalid", `${image}: refusing a rootfs another user can change: ${why}; copy it to a directory only you (or root) can write`);
}

/**
 * Writable by every user, or by a group other than root's and other than this user's own primary group on a
 * directory this user owns (a user-private group, as `umask 002` setups give every home).
 */
function othersCanWrite(stats: Stats): boolean {
  if ((stats.mode & 0o002) !== 0) return true;
  if ((stats.mode & 0o020) === 0 || stats.gid === 0) return false;
  return !(stats.gid === process.getegid?.() && stats.uid === process.geteuid?.());
}

function nearestExisting(path: string): string {
  for (let dir = path; ; dir = dirname(dir)) {
    try {
      statSync(dir);
      return dir;
    } catch (error) {
      if (errnoCode(error) !== "ENOENT" || dirname(dir) === dir) throw error;
    }
  }
}

function statOf(home: string, path: string): Stats {
  try {
    return statSync(path);
  } catch (error) {
    throw unsafe(home, `cannot stat ${path}: ${(error as Error).message}`, error);
  }
}

function modeText(stats: Stats): string {
  return (stats.mode & 0o7777).toString(8).padStart(4, "0");
}

function unsafe(home: string, why: string, cause?: unknown): IiiError {
  return new IiiError("HomeUnwritable", `III_HOME ${home} is not safe to use: ${why}`, cause === undefined ? undefined : { cause });
}
