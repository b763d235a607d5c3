// Copy-on-write view of two host directories: `lower` (an image rootfs shared by
// many workers, never modified: only lstat/getdents/readlink/l*xattr reads and
// O_RDONLY opens touch it) and `upper` (this mount's changes).
//
// On-disk format in upper, as in OCI layers: `.wh.<name>` marks <name> deleted,
// `.wh..wh..opq` in a directory hides the lower directory's content. Guest names
// beginning with `.wh.` are therefore refused (EPERM) and never listed.
// First modification copies the entry up (content, times, user.* xattrs and the
// guest's mode/owner as an override, see host-meta.ts: the upper file itself is owned
// by the host owner and never setuid, a device node or a FIFO); renaming a directory
// copies its whole merged subtree up and marks it opaque.
import { pinHostFile, type Pin } from "./pinned-files.js";
import fs from "node:fs";
import { Errno, fail } from "../host/errno.js";
import { HostRoot } from "../host/host-root.js";
import { joinGuest, splitParent } from "../core/guest-path.js";
import {
  fchmodatNoFollow,
  lgetxattr,
  llistxattr,
  lremovexattr,
  lsetxattr,
  O_CLOEXEC,
  O_NOFOLLOW,
  utimensatNoFollow,
  type DirEntry,
  type TimeSpec,
} from "../host/libc.js";
import { defaultPolicy, hostOpenFlags, isWriteOpen, PassthroughTree, statfsOf } from "./passthrough-tree.js";
import {
  fixDirentTypes,
  guestMeta,
  hostPerms,
  hostTypeOf,
  isSpecialType,
  mergeAttr,
  needsOverride,
  OVERRIDE_XATTR,
  readOverride,
  writeOverride,
  type HostPolicy,
} from "./host-meta.js";
import { S_IFDIR, S_IFLNK, S_IFMT, S_IFREG, statToAttr, type Attr, type FsStats, type Tree } from "./tree.js";
import type { DiskQuota } from "../host/fuse-caller.js";

export const WHITEOUT_PREFIX = ".wh.";
export const OPAQUE_MARKER = ".wh..wh..opq";

const { O_CREAT, O_EXCL, O_RDWR, O_WRONLY } = fs.constants;

/**
 * Directory states kept at most (least recently used dropped first; a dropped one is worked out again). The guest
 * makes the directories: unbounded, the cache held ~4 KB a directory it ever looked into, and the scan of every key
 * on each mkdir/rmdir/rename made 8,000 mkdirs under a deep parent take 58 ms each by the end (review s15; a scan
 * of 4,096 such keys still took 12 ms). Only a directory rename moves cached states (see `forgetDir`).
 */
export const MAX_DIR_STATES = 4096;

interface DirState {
  /** The directory exists in upper. */
  upper: boolean;
  /** The lower directory at this path shows through (exists, not opaque, not whited out). */
  lower: boolean;
}

interface Found {
  layer: "upper" | "lower";
  st: fs.Stats;
}

export class LayeredTree implements Tree {
  private withBirthTimes = false;
  readonly lower: HostRoot;
  readonly upper: HostRoot;
  private readonly upperTree: PassthroughTree;
  /** Directory path → state, at most MAX_DIR_STATES, least recently used first. */
  private readonly dirs = new Map<string, DirState>();
  /** For tests: how many directory states are kept. */
  get cachedDirStates(): number {
    return this.dirs.size;
  }
  private tmpCounter = 0;
  private dirBlock: number | undefined;
  /**
   * The writable layer's disk limit (MountOptions.upperLimitBytes): every entry and byte that lands in upper is
   * charged before it does (ENOSPC past the limit); removals only say space may have come back.
   */
  quota: DiskQuota | null = null;

  private readonly policy: HostPolicy;

  constructor(lowerDir: string, upperDir: string, policy?: HostPolicy) {
    this.lower = new HostRoot(lowerDir);
    try {
      this.policy = policy ?? defaultPolicy(upperDir);
      this.upperTree = new PassthroughTree(upperDir, this.policy);
    } catch (err) {
      this.lower.close();
      throw err;
    }
    this.upper = this.upperTree.host;
  }

  /** Birth times in every Attr (GuestFs sets this for stableInodes). */
  get birthTimes(): boolean {
    return this.withBirthTimes;
  }

  set birthTimes(on: boolean) {
    this.withBirthTimes = on;
  }

  // ---- resolution -------------------------------------------------------

  private lstatIn(root: HostRoot, path: string): fs.Stats | undefined {
    let p: string;
    try {
      p = root.path(path);
    } catch (err) {
      const e = (err as { errno?: number }).errno;
      if (e === Errno.ENOENT || e === Errno.ENOTDIR) return undefined;
      throw err;
    }
    return fs.lstatSync(p, { throwIfNoEntry: false });
  }

  private hasWhiteout(path: string): boolean {
    const [parent, name] = splitParent(path);
    return this.lstatIn(this.upper, joinGuest(parent, WHITEOUT_PREFIX + name)) !== undefined;
  }

  private isOpaque(dir: string): boolean {
    return this.lstatIn(this.upper, joinGuest(dir, OPAQUE_MARKER)) !== undefined;
  }

  private static reserved(path: string): boolean {
    const name = splitParent(path)[1];
    return name.startsWith(WHITEOUT_PREFIX);
  }

  private dirState(path: string): DirState {
    if (path === "/") {
      let s = this.dirs.get("/");
      if (!s) {
        s = { upper: true, lower: !this.isOpaque("/") };
        this.remember("/", s);
      }
      return s;
    }
    const cached = this.dirs.get(path);
    if (cached) {
      // Most recently used last: ancestors of busy directories stay.
      this.dirs.delete(path);
      this.dirs.set(path, cached);
      return cached;
    }
    const found = this.find(path);
    if (!found) fail(Errno.ENOENT, "lookup");
    if (!found.st.isDirectory()) fail(Errno.ENOTDIR, "lookup");
    let state: DirState;
    if (found.layer === "upper") {
      const parent = this.dirState(splitParent(path)[0]);
      const lowerDir = parent.lower && !this.isOpaque(path) ? this.lstatIn(this.lower, path) : undefined;
      state = { upper: true, lower: lowerDir?.isDirectory() ?? false };
    } else {
      state = { upper: false, lower: true };
    }
    this.remember(path, state);
    return state;
  }

  private remember(path: string, state: DirState): void {
    if (!this.dirs.has(path) && this.dirs.size >= MAX_DIR_STATES) {
      const oldest = this.dirs.keys().next().value;
      if (oldest !== undefined) this.dirs.delete(oldest);
    }
    this.dirs.set(path, state);
  }

  private find(path: string): Found | undefined {
    if (path === "/") return { layer: "upper", st: fs.lstatSync(this.upper.rootEntry.hostPath) };
    if (LayeredTree.reserved(path)) return undefined;
    const [parentPath] = splitParent(path);
    const parent = this.dirState(parentPath);
    if (parent.upper) {
      const u = this.lstatIn(this.upper, path);
      if (u) return { layer: "upper", st: u };
      if (this.hasWhiteout(path)) return undefined;
    }
    if (parent.lower) {
      const l = this.lstatIn(this.lower, path);
      if (l) return { layer: "lower", st: l };
    }
    return undefined;
  }

  private lookup(path: string): Found {
    const f = this.find(path);
    if (!f) fail(Errno.ENOENT, "lookup");
    return f;
  }

  /**
   * Forgets the state of the directory `path` (made, copied up, removed). Its cached descendants need no visit: a
   * state is cached only for a directory that was found, mkdir makes a name nothing was found under, rmdir removes
   * a directory already empty in the merged view (its subdirectories went first, each forgotten), and a copy-up
   * leaves its lower-only children lower-only. A directory rename moves a subtree: `forgetAllDirs`.
   */
  private forgetDir(path: string): void {
    this.dirs.delete(path);
  }

  private forgetAllDirs(): void {
    this.dirs.clear();
  }

  /** The lower layer has an entry at `path` that the merged parent lets show through. */
  private lowerHas(path: string): boolean {
    const parent = this.dirState(splitParent(path)[0]);
    return parent.lower && this.lstatIn(this.lower, path) !== undefined;
  }

  // ---- copy-up ----------------------------------------------------------

  /**
   * Runs bookkeeping that adds or renames entries in the upper directory `dir` (copy-up
   * temp files, opaque markers) and puts the directory's times back: on a plain
   * directory those operations would not have touched its mtime.
   */
  private keepingDirTimes<T>(dir: string, fn: () => T): T {
    const e = this.upper.entry(dir);
    const st = fs.lstatSync(e.hostPath, { bigint: true });
    const result = fn();
    const ts = (ns: bigint): TimeSpec => ({ sec: Number(ns / 1_000_000_000n), nsec: Number(ns % 1_000_000_000n) });
    utimensatNoFollow(e.dirfd, e.name, ts(st.atimeNs), ts(st.mtimeNs));
    return result;
  }

  /**
   * Gives a copied-up entry the lower entry's guest view: host owner and harmless host
   * mode on the upper entry, the lower's guest mode/owner/rdev as its override, the
   * lower's user.* xattrs (incl. mapped guest ones; the host's own security and trusted
   * attributes of the image stay behind), and its times.
   */
  private copyAttrs(from: string, toDirfd: number, toName: string, toHostPath: string, st: fs.BigIntStats): void {
    const hostSt = { mode: Number(st.mode), uid: Number(st.uid), gid: Number(st.gid), rdev: Number(st.rdev) };
    const meta = guestMeta(hostSt, readOverride(from, hostSt.mode));
    const hostType = hostTypeOf(meta.mode & S_IFMT);
    const { uid, gid } = this.policy.owner;
    fs.lchownSync(toHostPath, uid, gid);
    const perms = hostPerms(meta.mode);
    if (hostType !== S_IFLNK) fchmodatNoFollow(toDirfd, toName, perms);
    if (hostType !== S_IFLNK) {
      for (const name of llistxattr(from)) {
        if (name.startsWith("user.") && name !== OVERRIDE_XATTR) lsetxattr(toHostPath, name, lgetxattr(from, name), 0);
      }
    }
    if (needsOverride(meta, { mode: hostType | perms, uid, gid, rdev: 0 })) writeOverride(toHostPath, hostType, meta, false);
    const ts = (ns: bigint): TimeSpec => ({ sec: Number(ns / 1_000_000_000n), nsec: Number(ns % 1_000_000_000n) });
    utimensatNoFollow(toDirfd, toName, ts(st.atimeNs), ts(st.mtimeNs));
  }

  /**
   * What a new directory takes on the host beyond its entry: its first block (the disk limit's count sees it as
   * the directory's blocks). Charged 1 KiB like a file before, 4,075 empty dirs under a 4 MiB limit left
   * 16.8 MB in upper (review s15).
   */
  private dirBlockBytes(): number {
    this.dirBlock ??= statfsOf(this.upper.rootEntry.hostPath).bsize;
    return this.dirBlock;
  }

  /** Makes `dir` (a directory in the merged view) exist in upper; returns its state. */
  private ensureUpperDir(dir: string): DirState {
    const state = this.dirState(dir);
    if (state.upper) return state;
    const parent = splitParent(dir)[0];
    this.ensureUpperDir(parent);
    const lowerPath = this.lower.path(dir);
    const st = fs.lstatSync(lowerPath, { bigint: true });
    const e = this.upper.entry(dir);
    this.quota?.chargeEntry(this.dirBlockBytes());
    this.keepingDirTimes(parent, () => fs.mkdirSync(e.hostPath, 0o700));
    this.copyAttrs(lowerPath, e.dirfd, e.name, e.hostPath, st);
    this.forgetDir(dir);
    return this.dirState(dir);
  }

  /** Makes the non-directory at `path` exist in upper (copying content and metadata). */
  private copyUp(path: string): void {
    const found = this.lookup(path);
    if (found.layer === "upper") return;
    if (found.st.isDirectory()) {
      this.ensureUpperDir(path);
      return;
    }
    const [parent, name] = splitParent(path);
    this.ensureUpperDir(parent);
    const lowerPath = this.lower.path(path);
    const st = fs.lstatSync(lowerPath, { bigint: true });
    const tmpName = `${WHITEOUT_PREFIX}.iii-copyup.${process.pid}.${this.tmpCounter++}`;
    const parentEntry = this.upper.entry(parent);
    const parentSt = fs.lstatSync(parentEntry.hostPath, { bigint: true });
    const ts = (ns: bigint): TimeSpec => ({ sec: Number(ns / 1_000_000_000n), nsec: Number(ns % 1_000_000_000n) });
    const restoreParent = (): void => utimensatNoFollow(parentEntry.dirfd, parentEntry.name, ts(parentSt.atimeNs), ts(parentSt.mtimeNs));
    const tmp = this.upper.entry(joinGuest(parent, tmpName));
    const type = Number(st.mode) & S_IFMT;
    this.quota?.chargeEntry(type === S_IFREG || type === S_IFLNK ? Number(st.size) : 0);
    try {
      if (type === S_IFREG) {
        const src = fs.openSync(lowerPath, fs.constants.O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
        try {
          const dst = fs.openSync(tmp.hostPath, O_CREAT | O_EXCL | O_WRONLY | O_NOFOLLOW | O_CLOEXEC, 0o600);
          try {
            copyFd(src, dst, Number(st.size));
          } finally {
            fs.closeSync(dst);
          }
        } finally {
          fs.closeSync(src);
        }
      } else if (type === S_IFLNK) {
        fs.symlinkSync(fs.readlinkSync(lowerPath), tmp.hostPath);
      } else {
        // A FIFO, socket or device node of the image: an empty regular file plus override.
        fs.closeSync(fs.openSync(tmp.hostPath, O_CREAT | O_EXCL | O_WRONLY | O_NOFOLLOW | O_CLOEXEC, 0o600));
      }
      this.copyAttrs(lowerPath, tmp.dirfd, tmp.name, tmp.hostPath, st);
      this.renameInUpper(tmp.hostPath, this.upper.path(path));
      restoreParent();
    } catch (err) {
      fs.rmSync(tmp.hostPath, { force: true });
      throw err;
    }
  }

  /** Copies a whole merged subtree into upper, so the directory can move as one. */
  private materialize(dir: string): void {
    this.ensureUpperDir(dir);
    for (const e of this.readdir(dir)) {
      const child = joinGuest(dir, e.name);
      const f = this.lookup(child);
      if (f.st.isDirectory()) this.materialize(child);
      else this.copyUp(child);
    }
  }

  private removeWhiteout(path: string): boolean {
    const [parent, name] = splitParent(path);
    const wh = this.lstatIn(this.upper, joinGuest(parent, WHITEOUT_PREFIX + name));
    if (!wh) return false;
    fs.unlinkSync(this.upper.path(joinGuest(parent, WHITEOUT_PREFIX + name)));
    return true;
  }

  private addWhiteout(path: string): void {
    const [parent, name] = splitParent(path);
    this.ensureUpperDir(parent);
    this.markerFile(joinGuest(parent, WHITEOUT_PREFIX + name));
  }

  /** Creates an (empty, 0600, host-owner) whiteout or opaque marker in upper. */
  private markerFile(path: string): void {
    this.quota?.chargeEntry();
    const fd = fs.openSync(this.upper.path(path), O_CREAT | O_WRONLY | O_NOFOLLOW | O_CLOEXEC, 0o600);
    try {
      fs.fchownSync(fd, this.policy.owner.uid, this.policy.owner.gid);
    } finally {
      fs.closeSync(fd);
    }
  }

  /** A rename inside upper, with the disk limit's count held off meanwhile (it would miss a subtree moved behind its walk). */
  private renameInUpper(from: string, to: string): void {
    if (this.quota) this.quota.renaming(() => fs.renameSync(from, to));
    else fs.renameSync(from, to);
  }

  /** Prepare a new name: parent in upper, not existing in the merged view, no stale whiteout. */
  private prepareCreate(path: string): { hadWhiteout: boolean } {
    if (LayeredTree.reserved(path)) fail(Errno.EPERM, "names beginning with .wh. are reserved in layered mounts");
    if (this.find(path)) fail(Errno.EEXIST, "create");
    this.ensureUpperDir(splitParent(path)[0]);
    this.quota?.chargeEntry();
    return { hadWhiteout: this.removeWhiteout(path) };
  }

  /** Removes an upper directory that the merged view shows as empty (only markers left). */
  private removeUpperDir(path: string): void {
    for (const e of this.upper.readDir(path)) {
      if (e.name.startsWith(WHITEOUT_PREFIX)) fs.unlinkSync(this.upper.path(joinGuest(path, e.name)));
    }
    fs.rmdirSync(this.upper.path(path));
    this.upper.invalidate(path);
  }

  /**
   * Whether the merged directory at `path` shows no entry (rmdir, rename onto it): stops reading at the first
   * visible name, with no override read per entry. The full listing it replaces took 676 ms per failing rmdir of a directory of
   * 200,000 files, one lgetxattr each (review s15).
   */
  private isEmpty(path: string): boolean {
    const state = this.dirState(path);
    const whitedOut = new Set<string>();
    if (state.upper) {
      const visible = (name: string): boolean => !name.startsWith(WHITEOUT_PREFIX);
      for (const e of this.upper.readDir(path, visible)) {
        if (visible(e.name)) return false;
        whitedOut.add(e.name.slice(WHITEOUT_PREFIX.length));
      }
    }
    if (state.lower) {
      const visible = (name: string): boolean => !whitedOut.has(name) && !name.startsWith(WHITEOUT_PREFIX);
      if (this.lower.readDir(path, visible).some((e) => visible(e.name))) return false;
    }
    return true;
  }

  // ---- Tree ------------------------------------------------------------

  private rootOf(f: Found): HostRoot {
    return f.layer === "upper" ? this.upper : this.lower;
  }

  getattr(path: string): Attr {
    const f = this.lookup(path);
    return mergeAttr(statToAttr(f.st, this.withBirthTimes), readOverride(this.rootOf(f).path(path), f.st.mode));
  }

  readdir(path: string): DirEntry[] {
    const state = this.dirState(path);
    const out: DirEntry[] = [];
    const seen = new Set<string>();
    if (state.upper) {
      const upperEntries: DirEntry[] = [];
      for (const e of this.upper.readDir(path)) {
        if (e.name.startsWith(WHITEOUT_PREFIX)) {
          seen.add(e.name.slice(WHITEOUT_PREFIX.length));
          continue;
        }
        seen.add(e.name);
        upperEntries.push(e);
      }
      fixDirentTypes(upperEntries, `/proc/self/fd/${this.upper.dirFd(path)}`);
      out.push(...upperEntries);
    }
    if (state.lower) {
      const lowerEntries = this.lower.readDir(path).filter((e) => !seen.has(e.name) && !e.name.startsWith(WHITEOUT_PREFIX));
      fixDirentTypes(lowerEntries, `/proc/self/fd/${this.lower.dirFd(path)}`);
      out.push(...lowerEntries);
    }
    return out;
  }

  readlink(path: string): string {
    const f = this.lookup(path);
    return fs.readlinkSync((f.layer === "upper" ? this.upper : this.lower).path(path));
  }

  open(path: string, flags: number): number {
    if (isWriteOpen(flags)) {
      this.copyUp(path);
      return fs.openSync(this.upper.path(path), hostOpenFlags(flags));
    }
    const f = this.lookup(path);
    const root = f.layer === "upper" ? this.upper : this.lower;
    return fs.openSync(root.path(path), hostOpenFlags(flags));
  }

  create(path: string, mode: number): number {
    this.prepareCreate(path);
    return this.upperTree.create(path, mode);
  }

  truncate(path: string, size: number): void {
    this.copyUp(path);
    this.quota?.resize(fs.lstatSync(this.upper.path(path)).size, size);
    this.upperTree.truncate(path, size);
  }

  chmod(path: string, mode: number): void {
    this.copyUp(path);
    this.upperTree.chmod(path, mode);
  }

  chown(path: string, uid: number, gid: number): void {
    this.copyUp(path);
    this.upperTree.chown(path, uid, gid);
  }

  utimens(path: string, atime: TimeSpec, mtime: TimeSpec): void {
    this.copyUp(path);
    this.upperTree.utimens(path, atime, mtime);
  }

  mkdir(path: string, mode: number): void {
    const { hadWhiteout } = this.prepareCreate(path);
    this.quota?.charge(this.dirBlockBytes());
    this.upperTree.mkdir(path, mode);
    // A lower directory of the same name was deleted: it must not show through.
    if (hadWhiteout) this.markerFile(joinGuest(path, OPAQUE_MARKER));
    this.forgetDir(path);
  }

  rmdir(path: string): void {
    const state = this.dirState(path);
    if (!this.isEmpty(path)) fail(Errno.ENOTEMPTY, "rmdir");
    const lowerToo = this.lowerHas(path);
    if (state.upper) this.removeUpperDir(path);
    this.quota?.freed();
    if (lowerToo) this.addWhiteout(path);
    this.forgetDir(path);
  }

  unlink(path: string): void {
    const f = this.lookup(path);
    if (f.st.isDirectory()) fail(Errno.EISDIR, "unlink");
    const lowerToo = this.lowerHas(path);
    if (f.layer === "upper") fs.unlinkSync(this.upper.path(path));
    this.quota?.freed();
    if (lowerToo) this.addWhiteout(path);
  }

  rename(from: string, to: string): void {
    if (LayeredTree.reserved(to)) fail(Errno.EPERM, "names beginning with .wh. are reserved in layered mounts");
    const src = this.lookup(from);
    if (from === to) return;
    const dst = this.find(to);
    const srcIsDir = src.st.isDirectory();
    if (dst) {
      const dstIsDir = dst.st.isDirectory();
      if (srcIsDir && !dstIsDir) fail(Errno.ENOTDIR, "rename");
      if (!srcIsDir && dstIsDir) fail(Errno.EISDIR, "rename");
      if (dstIsDir && !this.isEmpty(to)) fail(Errno.ENOTEMPTY, "rename");
    }
    const lowerHadSrc = this.lowerHas(from);
    if (srcIsDir) {
      this.materialize(from);
      this.keepingDirTimes(from, () => this.markerFile(joinGuest(from, OPAQUE_MARKER)));
      if (dst && dst.layer === "upper") this.removeUpperDir(to);
    } else {
      this.copyUp(from);
    }
    this.ensureUpperDir(splitParent(to)[0]);
    this.removeWhiteout(to);
    this.renameInUpper(this.upper.path(from), this.upper.path(to));
    // A replaced target's space may have come back.
    this.quota?.freed();
    this.upper.invalidate(from);
    this.upper.invalidate(to);
    if (srcIsDir) this.forgetAllDirs();
    else this.forgetDir(to);
    if (lowerHadSrc) this.addWhiteout(from);
  }

  symlink(target: string, path: string): void {
    this.prepareCreate(path);
    this.quota?.charge(Buffer.byteLength(target));
    this.upperTree.symlink(target, path);
  }

  link(from: string, to: string): void {
    const src = this.lookup(from);
    if (src.st.isDirectory()) fail(Errno.EPERM, "link");
    this.copyUp(from);
    this.prepareCreate(to);
    this.upperTree.link(from, to);
  }

  mknod(path: string, mode: number, dev: number): void {
    const type = mode & S_IFMT;
    if (type !== S_IFREG && !isSpecialType(type)) fail(Errno.EINVAL, "mknod");
    this.prepareCreate(path);
    this.upperTree.mknod(path, mode, dev);
  }

  statfs(): FsStats {
    return statfsOf(this.upper.rootEntry.hostPath);
  }

  access(path: string, mode: number): void {
    const f = this.lookup(path);
    if ((f.st.mode & S_IFMT) === S_IFLNK) return;
    fs.accessSync((f.layer === "upper" ? this.upper : this.lower).path(path), mode & ~2 /* W_OK: copy-up makes it writable */);
  }

  getxattr(path: string, name: string): Buffer {
    const f = this.lookup(path);
    return lgetxattr((f.layer === "upper" ? this.upper : this.lower).path(path), name);
  }

  setxattr(path: string, name: string, value: Buffer, flags: number): void {
    this.copyUp(path);
    this.quota?.charge(Buffer.byteLength(name) + value.length);
    lsetxattr(this.upper.path(path), name, value, flags);
  }

  listxattr(path: string): string[] {
    const f = this.lookup(path);
    return llistxattr((f.layer === "upper" ? this.upper : this.lower).path(path));
  }

  removexattr(path: string, name: string): void {
    this.copyUp(path);
    lremovexattr(this.upper.path(path), name);
  }

  pin(path: string): Pin | undefined {
    const f = this.find(path);
    if (!f) return undefined;
    return pinHostFile(this.rootOf(f).path(path), f.layer === "upper");
  }

  close(): void {
    this.upperTree.close();
    this.lower.close();
  }
}

function copyFd(src: number, dst: number, size: number): void {
  const buf = Buffer.allocUnsafe(Math.min(1 << 20, Math.max(size, 1)));
  let pos = 0;
  for (;;) {
    const n = fs.readSync(src, buf, 0, buf.length, pos);
    if (n === 0) break;
    let off = 0;
    while (off < n) off += fs.writeSync(dst, buf, off, n - off, pos + off);
    pos += n;
  }
}

export { S_IFDIR };
