// One host directory served as is, with containment (see HostRoot).
import fs from "node:fs";
import { Errno, fail } from "../host/errno.js";
import { HostRoot } from "../host/host-root.js";
import {
  fchmodatNoFollow,
  lgetxattr,
  llistxattr,
  lremovexattr,
  lsetxattr,
  mknodat,
  O_CLOEXEC,
  O_NOFOLLOW,
  utimensatNoFollow,
  type DirEntry,
  type TimeSpec,
} from "../host/libc.js";
import { S_IFBLK, S_IFCHR, S_IFIFO, S_IFLNK, S_IFMT, S_IFREG, S_IFSOCK, statToAttr, type Attr, type FsStats, type Tree } from "./tree.js";

const O_ACCMODE = 3;
const { O_APPEND, O_TRUNC, O_SYNC, O_DSYNC, O_CREAT, O_EXCL, O_RDWR, O_WRONLY, O_RDONLY } = fs.constants;
const PASS_OPEN_FLAGS = O_ACCMODE | O_APPEND | O_TRUNC | O_SYNC | O_DSYNC;

/** The umask of this process, read once: creation modes from the guest are exact. */
const processUmask = (() => {
  const m = process.umask(0o022);
  process.umask(m);
  return m;
})();

export function hostOpenFlags(guestFlags: number): number {
  return (guestFlags & PASS_OPEN_FLAGS) | O_NOFOLLOW | O_CLOEXEC;
}

export function isWriteOpen(flags: number): boolean {
  return (flags & O_ACCMODE) !== O_RDONLY || (flags & O_TRUNC) !== 0;
}

export class PassthroughTree implements Tree {
  readonly host: HostRoot;

  constructor(hostDir: string) {
    this.host = new HostRoot(hostDir);
  }

  getattr(path: string): Attr {
    return statToAttr(fs.lstatSync(this.host.path(path)));
  }

  readdir(path: string): DirEntry[] {
    return this.host.readDir(path);
  }

  readlink(path: string): string {
    return fs.readlinkSync(this.host.path(path));
  }

  open(path: string, flags: number): number {
    return fs.openSync(this.host.path(path), hostOpenFlags(flags));
  }

  create(path: string, mode: number): number {
    // fuse-native does not pass the create flags: open read-write (root may, whatever
    // the mode) and exclusive, which is what the kernel asked for after a negative lookup.
    const fd = fs.openSync(this.host.path(path), O_CREAT | O_EXCL | O_RDWR | O_NOFOLLOW | O_CLOEXEC, mode & 0o7777);
    if (mode & processUmask & 0o7777) fs.fchmodSync(fd, mode & 0o7777);
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
    fchmodatNoFollow(e.dirfd, e.name, mode & 0o7777);
  }

  chown(path: string, uid: number, gid: number): void {
    fs.lchownSync(this.host.path(path), uid, gid);
  }

  utimens(path: string, atime: TimeSpec, mtime: TimeSpec): void {
    const e = this.host.entry(path);
    utimensatNoFollow(e.dirfd, e.name, atime, mtime);
  }

  mkdir(path: string, mode: number): void {
    const e = this.host.entry(path);
    fs.mkdirSync(e.hostPath, mode & 0o7777);
    if (mode & processUmask & 0o7777) fchmodatNoFollow(e.dirfd, e.name, mode & 0o7777);
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
    fs.symlinkSync(target, this.host.path(path));
  }

  link(from: string, to: string): void {
    fs.linkSync(this.host.path(from), this.host.path(to));
  }

  mknod(path: string, mode: number, dev: number): void {
    const type = mode & S_IFMT;
    if (type === S_IFCHR || type === S_IFBLK) fail(Errno.EPERM, "mknod: device nodes are refused");
    if (type !== S_IFIFO && type !== S_IFSOCK && type !== S_IFREG) fail(Errno.EINVAL, "mknod");
    const e = this.host.entry(path);
    mknodat(e.dirfd, e.name, mode, dev);
    if (mode & processUmask & 0o7777) fchmodatNoFollow(e.dirfd, e.name, mode & 0o7777);
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
