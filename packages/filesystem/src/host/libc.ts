// Thin koffi bindings for the few syscalls Node's fs module lacks: openat2 (for
// RESOLVE_BENEATH containment), xattrs, mknodat, fchmodat/utimensat with
// AT_SYMLINK_NOFOLLOW and nanosecond times, renameat2 and memfd_create.
// Every wrapper returns the result or throws an ErrnoError (negative errno),
// so callers treat them like Node's *Sync functions.
import { ErrnoError } from "./errno.js";
import { loadKoffi } from "./koffi.js";

const koffi = loadKoffi();

const lib = koffi.load("libc.so.6");

export const O_PATH = 0o10000000;
export const O_NOFOLLOW = 0o400000;
export const O_DIRECTORY = 0o200000;
export const O_CLOEXEC = 0o2000000;
export const AT_SYMLINK_NOFOLLOW = 0x100;
export const RESOLVE_NO_MAGICLINKS = 0x02;
export const RESOLVE_NO_SYMLINKS = 0x04;
export const RESOLVE_BENEATH = 0x08;
export const RENAME_NOREPLACE = 1;
export const RENAME_EXCHANGE = 2;
export const UTIME_NOW = (1 << 30) - 1;
export const UTIME_OMIT = (1 << 30) - 2;
const SYS_openat2 = 437;

const Timespec = koffi.struct("iii_timespec", { tv_sec: "int64", tv_nsec: "int64" });
const OpenHow = koffi.struct("iii_open_how", { flags: "uint64", mode: "uint64", resolve: "uint64" });

// syscall(2) is variadic; openat2 has no glibc 2.36 wrapper.
const sysOpenat2 = lib.func("long syscall(long nr, int dirfd, const char *path, iii_open_how *how, size_t size)");
const sysGetdents64 = lib.func("long syscall(long nr, int fd, _Out_ uint8_t *buf, size_t count)");
const cLgetxattr = lib.func("intptr_t lgetxattr(const char *path, const char *name, _Out_ uint8_t *value, size_t size)");
const cLsetxattr = lib.func("int lsetxattr(const char *path, const char *name, const uint8_t *value, size_t size, int flags)");
const cLlistxattr = lib.func("intptr_t llistxattr(const char *path, _Out_ uint8_t *list, size_t size)");
const cLremovexattr = lib.func("int lremovexattr(const char *path, const char *name)");
const cMknodat = lib.func("int mknodat(int dirfd, const char *path, uint32_t mode, uint64_t dev)");
const cFchmodat = lib.func("int fchmodat(int dirfd, const char *path, uint32_t mode, int flags)");
const cUtimensat = lib.func("int utimensat(int dirfd, const char *path, iii_timespec *times, int flags)");
const cRenameat2 = lib.func("int renameat2(int olddirfd, const char *oldpath, int newdirfd, const char *newpath, uint32_t flags)");
const cMemfdCreate = lib.func("int memfd_create(const char *name, uint32_t flags)");
// fcntl is variadic; F_GETFD/F_SETFD take (at most) one int, which is passed the same way.
const cFcntl = lib.func("int fcntl(int fd, int cmd, int arg)");

function fail(op: string): never {
  throw new ErrnoError(-koffi.errno(), op);
}

/** openat2 with RESOLVE_BENEATH|RESOLVE_NO_SYMLINKS: the result is always inside dirfd. */
export function openBeneath(dirfd: number, relPath: string, flags: number): number {
  const fd = Number(
    sysOpenat2(SYS_openat2, dirfd, relPath, { flags: flags | O_CLOEXEC, mode: 0, resolve: RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS | RESOLVE_NO_MAGICLINKS }, 24),
  );
  if (fd < 0) fail("openat2");
  return fd;
}

export function lgetxattr(path: string, name: string): Buffer {
  let size = 256;
  for (;;) {
    const buf = Buffer.alloc(size);
    const n = Number(cLgetxattr(path, name, buf, size));
    if (n >= 0) return buf.subarray(0, n);
    const e = koffi.errno();
    if (e !== 34 /* ERANGE */) throw new ErrnoError(-e, "lgetxattr");
    const need = Number(cLgetxattr(path, name, null, 0));
    if (need < 0) fail("lgetxattr");
    size = Math.max(need, size * 2);
  }
}

const cLgetxattrBuf = lib.func("intptr_t lgetxattr(const uint8_t *path, const uint8_t *name, _Out_ uint8_t *value, size_t size)");

/**
 * lgetxattr without throwing (absent attributes are normal traffic), path and name
 * already NUL-terminated in Buffers (no string conversion per call): byte count or negative errno.
 */
export function lgetxattrRawBuf(path: Buffer, name: Buffer, out: Buffer): number {
  const n = Number(cLgetxattrBuf(path, name, out, out.length));
  return n >= 0 ? n : -koffi.errno();
}

/** Size-only probe (size 0) and ERANGE semantics as the kernel defines them. */
export function lgetxattrInto(path: string, name: string, out: Buffer): number {
  const n = Number(cLgetxattr(path, name, out.length === 0 ? null : out, out.length));
  if (n < 0) fail("lgetxattr");
  return n;
}

export function lsetxattr(path: string, name: string, value: Uint8Array, flags: number): void {
  if (cLsetxattr(path, name, value, value.length, flags) !== 0) fail("lsetxattr");
}

export function llistxattr(path: string): string[] {
  let size = 1024;
  for (;;) {
    const buf = Buffer.alloc(size);
    const n = Number(cLlistxattr(path, buf, size));
    if (n >= 0) return buf.toString("latin1", 0, n).split("\0").filter((s) => s.length > 0);
    const e = koffi.errno();
    if (e !== 34) throw new ErrnoError(-e, "llistxattr");
    size *= 4;
  }
}

export function lremovexattr(path: string, name: string): void {
  if (cLremovexattr(path, name) !== 0) fail("lremovexattr");
}

export function mknodat(dirfd: number, name: string, mode: number, dev: number): void {
  if (cMknodat(dirfd, name, mode, dev) !== 0) fail("mknodat");
}

export function fchmodatNoFollow(dirfd: number, name: string, mode: number): void {
  if (cFchmodat(dirfd, name, mode, AT_SYMLINK_NOFOLLOW) !== 0) fail("fchmodat");
}

/** A time for utimensat: nanoseconds since the epoch, or UTIME_NOW / UTIME_OMIT markers. */
export type TimeSpec = { sec: number; nsec: number };
export const TIME_NOW: TimeSpec = { sec: 0, nsec: UTIME_NOW };
export const TIME_OMIT: TimeSpec = { sec: 0, nsec: UTIME_OMIT };

export function utimensatNoFollow(dirfd: number, name: string, atime: TimeSpec, mtime: TimeSpec): void {
  const times = [
    { tv_sec: atime.sec, tv_nsec: atime.nsec },
    { tv_sec: mtime.sec, tv_nsec: mtime.nsec },
  ];
  if (cUtimensat(dirfd, name, koffi.as(times, koffi.pointer(Timespec)), AT_SYMLINK_NOFOLLOW) !== 0) fail("utimensat");
}

export function renameat2(olddirfd: number, oldname: string, newdirfd: number, newname: string, flags: number): void {
  if (cRenameat2(olddirfd, oldname, newdirfd, newname, flags) !== 0) fail("renameat2");
}

export function memfdCreate(name: string): number {
  const fd = cMemfdCreate(name, 1 /* MFD_CLOEXEC */) as number;
  if (fd < 0) fail("memfd_create");
  return fd;
}

const SYS_getdents64 = 217;

/** A directory entry as getdents64 reports it (d_ino, d_type): enough for readdir without a stat per name. */
export interface DirEntry {
  name: string;
  ino: number;
  /** DT_* value (4 = dir, 8 = file, 10 = symlink, 0 = unknown). */
  type: number;
}

const direntBuf = Buffer.alloc(64 * 1024);

/** Reads every entry of an open directory fd (excluding "." and ".."). */
/** `until`: stop after the first entry it accepts (that entry last), without reading the rest of the directory. */
export function readDirFd(fd: number, until?: (name: string) => boolean): DirEntry[] {
  const out: DirEntry[] = [];
  for (;;) {
    const n = Number(sysGetdents64(SYS_getdents64, fd, direntBuf, direntBuf.length));
    if (n < 0) fail("getdents64");
    if (n === 0) return out;
    let off = 0;
    while (off < n) {
      const ino = Number(direntBuf.readBigUInt64LE(off));
      const reclen = direntBuf.readUInt16LE(off + 16);
      const type = direntBuf[off + 18] ?? 0;
      let end = off + 19;
      while (end < off + reclen && direntBuf[end] !== 0) end++;
      const name = direntBuf.toString("utf8", off + 19, end);
      off += reclen;
      if (name === "." || name === "..") continue;
      out.push({ name, ino, type });
      if (until?.(name)) return out;
    }
  }
}

/** Sets FD_CLOEXEC on `fd`; returns false when the fd is not open. */
export function setCloexec(fd: number): boolean {
  const flags = cFcntl(fd, 1 /* F_GETFD */, 0) as number;
  if (flags < 0) return false;
  if (flags & 1) return true;
  return (cFcntl(fd, 2 /* F_SETFD */, flags | 1 /* FD_CLOEXEC */) as number) === 0;
}

// ---- The same on a path whose last component is followed (a /proc/self/fd/N magic link to a pinned file).
const cGetxattr = lib.func("intptr_t getxattr(const char *path, const char *name, _Out_ uint8_t *value, size_t size)");
const cSetxattr = lib.func("int setxattr(const char *path, const char *name, const uint8_t *value, size_t size, int flags)");
const cListxattr = lib.func("intptr_t listxattr(const char *path, _Out_ uint8_t *list, size_t size)");
const cRemovexattr = lib.func("int removexattr(const char *path, const char *name)");

/** getxattr following the last component; null when the attribute is absent (ENODATA). */
export function getxattrFollow(path: string, name: string): Buffer | null {
  let size = 256;
  for (;;) {
    const buf = Buffer.alloc(size);
    const n = Number(cGetxattr(path, name, buf, size));
    if (n >= 0) return buf.subarray(0, n);
    const e = koffi.errno();
    if (e === 61 /* ENODATA */) return null;
    if (e !== 34 /* ERANGE */) throw new ErrnoError(-e, "getxattr");
    size *= 4;
  }
}

export function setxattrFollow(path: string, name: string, value: Uint8Array, flags: number): void {
  if (cSetxattr(path, name, value, value.length, flags) !== 0) fail("setxattr");
}

export function listxattrFollow(path: string): string[] {
  let size = 1024;
  for (;;) {
    const buf = Buffer.alloc(size);
    const n = Number(cListxattr(path, buf, size));
    if (n >= 0) return buf.toString("latin1", 0, n).split("\0").filter((s) => s.length > 0);
    const e = koffi.errno();
    if (e !== 34) throw new ErrnoError(-e, "listxattr");
    size *= 4;
  }
}

export function removexattrFollow(path: string, name: string): void {
  if (cRemovexattr(path, name) !== 0) fail("removexattr");
}

export function utimensatFollow(path: string, atime: TimeSpec, mtime: TimeSpec): void {
  const times = [
    { tv_sec: atime.sec, tv_nsec: atime.nsec },
    { tv_sec: mtime.sec, tv_nsec: mtime.nsec },
  ];
  if (cUtimensat(-100 /* AT_FDCWD */, path, koffi.as(times, koffi.pointer(Timespec)), 0) !== 0) fail("utimensat");
}
