// One host directory served as is, with containment (see HostRoot).
import fs from "node:fs";
import { Errno, fail } from "../host/errno.js";
import { HostRoot, type HostEntry } from "../host/host-root.js";
import { splitParent } from "../core/guest-path.js";
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
import {
  fixDirentTypes,
  guestMeta,
  hostPerms,
  isSpecialType,
  mergeAttr,
  needsOverride,
  newEntryMeta,
  readOverride,
  writeOverride,
  type GuestOverride,
  type HostPolicy,
} from "./host-meta.js";
import { pinHostFile, type Pin } from "./pinned-files.js";
import { S_IFDIR, S_IFLNK, S_IFMT, S_IFREG, statToAttr, type Attr, type FsStats, type Tree } from "./tree.js";

const O_ACCMODE = 3;
const { O_APPEND, O_TRUNC, O_SYNC, O_DSYNC, O_CREAT, O_EXCL, O_RDWR, O_WRONLY, O_RDONLY } = fs.constants;
const PASS_OPEN_FLAGS = O_ACCMODE | O_APPEND | O_TRUNC | O_SYNC | O_DSYNC;

export function hostOpenFlags(guestFlags: number): number {
  return (guestFlags & PASS_OPEN_FLAGS) | O_NOFOLLOW | O_CLOEXEC;
}

export function isWriteOpen(flags: number): boolean {
  return (flags & O_ACCMODE) !== O_RDONLY || (flags & O_TRUNC) !== 0;
}

/** Host owner of `hostDir` and the server's own ids as the caller: the default policy. */
export function defaultPolicy(hostDir: string): HostPolicy {
  const st = fs.statSync(hostDir);
  return { owner: { uid: st.uid, gid: st.gid }, caller: () => ({ uid: process.geteuid?.() ?? 0, gid: process.getegid?.() ?? 0 }) };
}

export class PassthroughTree implements Tree {
  private withBirthTimes = false;
  readonly host: HostRoot;
  readonly policy: HostPolicy;

  constructor(hostDir: string, policy?: HostPolicy) {
    this.host = new HostRoot(hostDir);
    try {
      this.policy = policy ?? defaultPolicy(hostDir);
    } catch (err) {
      this.host.close();
      throw err;
    }
  }

  /** Birth times in every Attr (GuestFs sets this for stableInodes). */
  get birthTimes(): boolean {
    return this.withBirthTimes;
  }

  set birthTimes(on: boolean) {
    this.withBirthTimes = on;
  }

  getattr(path: string): Attr {
    const hp = this.host.path(path);
    const st = fs.lstatSync(hp);
    return mergeAttr(statToAttr(st, this.withBirthTimes), readOverride(hp, st.mode));
  }

  /** The guest's mode/owner/rdev of an existing entry, and whether it has an override. */
  meta(path: string): { hostPath: string; st: fs.Stats; meta: GuestOverride; overridden: boolean } {
    const hostPath = this.host.path(path);
    const st = fs.lstatSync(hostPath);
    const o = readOverride(hostPath, st.mode);
    return { hostPath, st, meta: guestMeta(st, o), overridden: o !== null };
  }

  readdir(path: string): DirEntry[] {
    const entries = this.host.readDir(path);
    fixDirentTypes(entries, `/proc/self/fd/${this.host.dirFd(path)}`);
    return entries;
  }

  readlink(path: string): string {
    return fs.readlinkSync(this.host.path(path));
  }

  open(path: string, flags: number): number {
    return fs.openSync(this.host.path(path), hostOpenFlags(flags));
  }

  /** Owner, setgid inheritance and mode of a new guest entry at `path`. */
  private newMeta(path: string, mode: number, rdev: number): GuestOverride {
    return newEntryMeta(mode, rdev, this.policy.caller(), this.meta(splitParent(path)[0]).meta);
  }

  /**
   * Makes a just-created host entry harmless and records the guest's view: host owner,
   * host permission bits, override xattr when the host entry does not show it by itself.
   * On failure the entry is removed again.
   */
  private settle(e: HostEntry, hostType: number, m: GuestOverride, fd?: number): void {
    const { uid, gid } = this.policy.owner;
    try {
      if (fd !== undefined) fs.fchownSync(fd, uid, gid);
      else fs.lchownSync(e.hostPath, uid, gid);
      const perms = hostPerms(m.mode);
      if (hostType !== S_IFLNK) {
        if (fd !== undefined) fs.fchmodSync(fd, perms);
        else fchmodatNoFollow(e.dirfd, e.name, perms);
      }
      if (needsOverride(m, { mode: hostType | perms, uid, gid, rdev: 0 })) writeOverride(e.hostPath, hostType, m, false);
    } catch (err) {
      if (fd !== undefined) fs.closeSync(fd);
      if (hostType === S_IFDIR) fs.rmdirSync(e.hostPath);
      else fs.unlinkSync(e.hostPath);
      throw err;
    }
  }

  create(path: string, mode: number): number {
    // fuse-native does not pass the create flags: open read-write (root may, whatever
    // the mode) and exclusive, which is what the kernel asked for after a negative lookup.
    const m = this.newMeta(path, S_IFREG | (mode & 0o7777), 0);
    const e = this.host.entry(path);
    const fd = fs.openSync(e.hostPath, O_CREAT | O_EXCL | O_RDWR | O_NOFOLLOW | O_CLOEXEC, 0o600);
    this.settle(e, S_IFREG, m, fd);
    return fd;
  }

  truncate(path: string, size: number): void {
    const fd = fs.openSync(this.host.path(path), O_WRONLY | O_NOFOLLOW | O_CLOEXEC);
    try {
      fs.ftruncateSync(fd, size);
    } finally {
      fs.closeSync(fd);
    }
  }

  chmod(path: string, mode: number): void {
    const e = this.host.entry(path);
    const { st, meta, overridden } = this.meta(path);
    const hostType = st.mode & S_IFMT;
    // Linux has no symlink modes: fchmodat(AT_SYMLINK_NOFOLLOW) gives the host's answer.
    if (hostType === S_IFLNK) return fchmodatNoFollow(e.dirfd, e.name, mode & 0o7777);
    const next: GuestOverride = { ...meta, mode: (meta.mode & S_IFMT) | (mode & 0o7777) };
    const perms = hostPerms(next.mode);
    fchmodatNoFollow(e.dirfd, e.name, perms);
    if (overridden || needsOverride(next, { mode: hostType | perms, uid: st.uid, gid: st.gid, rdev: st.rdev })) {
      writeOverride(e.hostPath, hostType, next, true);
    }
  }

  chown(path: string, uid: number, gid: number): void {
    const { hostPath, st, meta, overridden } = this.meta(path);
    const keep = (v: number): boolean => v === -1 || v === 0xffffffff;
    const next: GuestOverride = { ...meta, uid: keep(uid) ? meta.uid : uid, gid: keep(gid) ? meta.gid : gid };
    if (!overridden && !needsOverride(next, st)) return;
    // The guest's owner is never the host's: it lives in the override only.
    writeOverride(hostPath, st.mode & S_IFMT, next, true);
  }

  utimens(path: string, atime: TimeSpec, mtime: TimeSpec): void {
    const e = this.host.entry(path);
    utimensatNoFollow(e.dirfd, e.name, atime, mtime);
  }

  mkdir(path: string, mode: number): void {
    const m = this.newMeta(path, S_IFDIR | (mode & 0o7777), 0);
    const e = this.host.entry(path);
    fs.mkdirSync(e.hostPath, 0o700);
    this.settle(e, S_IFDIR, m);
  }

  rmdir(path: string): void {
    fs.rmdirSync(this.host.path(path));
    this.host.invalidate(path);
  }

  unlink(path: string): void {
    fs.unlinkSync(this.host.path(path));
  }

  rename(from: string, to: string): void {
    const src = this.host.path(from);
    const dst = this.host.path(to);
    fs.renameSync(src, dst);
    this.host.invalidate(from);
    this.host.invalidate(to);
  }

  symlink(target: string, path: string): void {
    const m = this.newMeta(path, S_IFLNK | 0o777, 0);
    const e = this.host.entry(path);
    fs.symlinkSync(target, e.hostPath);
    this.settle(e, S_IFLNK, m);
  }

  link(from: string, to: string): void {
    fs.linkSync(this.host.path(from), this.host.path(to));
  }

  /** Regular files as create; FIFOs, sockets and device nodes as empty 0600 host files plus an override. */
  mknod(path: string, mode: number, dev: number): void {
    const type = mode & S_IFMT;
    if (type !== S_IFREG && !isSpecialType(type)) fail(Errno.EINVAL, "mknod");
    const m = this.newMeta(path, type | (mode & 0o7777), dev);
    const e = this.host.entry(path);
    const fd = fs.openSync(e.hostPath, O_CREAT | O_EXCL | O_WRONLY | O_NOFOLLOW | O_CLOEXEC, 0o600);
    this.settle(e, S_IFREG, m, fd);
    fs.closeSync(fd);
  }

  statfs(): FsStats {
    return statfsOf(this.host.rootEntry.hostPath);
  }

  access(path: string, mode: number): void {
    const p = this.host.path(path);
    const st = fs.lstatSync(p);
    if ((st.mode & S_IFMT) === S_IFLNK) return;
    fs.accessSync(p, mode);
  }

  getxattr(path: string, name: string): Buffer {
    return lgetxattr(this.host.path(path), name);
  }

  setxattr(path: string, name: string, value: Buffer, flags: number): void {
    lsetxattr(this.host.path(path), name, value, flags);
  }

  listxattr(path: string): string[] {
    return llistxattr(this.host.path(path));
  }

  removexattr(path: string, name: string): void {
    lremovexattr(this.host.path(path), name);
  }

  pin(path: string): Pin | undefined {
    return pinHostFile(this.host.path(path), true);
  }

  close(): void {
    this.host.close();
  }
}

export function statfsOf(hostPath: string): FsStats {
  const s = fs.statfsSync(hostPath);
  return {
    bsize: s.bsize,
    frsize: s.bsize,
    blocks: s.blocks,
    bfree: s.bfree,
    bavail: s.bavail,
    files: s.files,
    ffree: s.ffree,
    favail: s.ffree,
    fsid: 0,
    flag: 0,
    namemax: 255,
  };
}
