// A host directory that guest paths are resolved against, component by component,
// without ever following a symlink and without ever leaving the directory.
//
// Parent directories are opened with openat2(RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS)
// relative to the root fd and pinned as O_PATH fds; the final component is then
// addressed as "/proc/self/fd/<dirfd>/<name>", which the kernel resolves through the
// pinned directory itself (a magic link to that exact inode), so a concurrent
// rename or symlink swap of an ancestor cannot redirect the operation. Every
// operation on the final component uses no-follow semantics (lstat, O_NOFOLLOW,
// l*xattr, AT_SYMLINK_NOFOLLOW): symlinks are guest data.
import fs from "node:fs";
import { O_CLOEXEC, O_DIRECTORY, O_NOFOLLOW, O_PATH, openBeneath, readDirFd, type DirEntry } from "./libc.js";
import { isAtOrBelow, splitParent, toRelative } from "../core/guest-path.js";

const MAX_CACHED_DIRS = 2048;

export interface HostEntry {
  /** Pinned O_PATH fd of the parent directory. */
  dirfd: number;
  /** Final component ("." for the root itself). */
  name: string;
  /** Path usable with Node's fs and l*xattr: resolves through the pinned parent. */
  hostPath: string;
}

export class HostRoot {
  readonly hostDir: string;
  readonly rootFd: number;
  readonly rootEntry: HostEntry;
  // Guest dir path → pinned O_PATH fd. Invalidated on rename/rmdir below a prefix,
  // which are the only ways a resolved directory can stop being at its path.
  private readonly dirs = new Map<string, number>();
  private closed = false;

  constructor(hostDir: string) {
    this.hostDir = hostDir;
    this.rootFd = fs.openSync(hostDir, O_PATH | O_DIRECTORY | O_CLOEXEC);
    this.rootEntry = { dirfd: this.rootFd, name: ".", hostPath: `/proc/self/fd/${this.rootFd}/.` };
  }

  /** Pinned fd of a guest directory; throws ENOENT/ENOTDIR/ELOOP (symlink component) like openat2. */
  dirFd(dir: string): number {
    if (dir === "/") return this.rootFd;
    const cached = this.dirs.get(dir);
    if (cached !== undefined) return cached;
    const fd = openBeneath(this.rootFd, toRelative(dir), O_PATH | O_DIRECTORY | O_NOFOLLOW);
    if (this.dirs.size >= MAX_CACHED_DIRS) {
      const oldest = this.dirs.entries().next().value;
      if (oldest) {
        this.dirs.delete(oldest[0]);
        fs.closeSync(oldest[1]);
      }
    }
    this.dirs.set(dir, fd);
    return fd;
  }

  entry(path: string): HostEntry {
    if (path === "/") return this.rootEntry;
    const [parent, name] = splitParent(path);
    const dirfd = this.dirFd(parent);
    return { dirfd, name, hostPath: `/proc/self/fd/${dirfd}/${name}` };
  }

  /** Host path for the final component (no-follow operations only). */
  path(path: string): string {
    if (path === "/") return this.rootEntry.hostPath;
    const [parent, name] = splitParent(path);
    return `/proc/self/fd/${this.dirFd(parent)}/${name}`;
  }

  /** Opens a guest directory for reading entries (no symlink anywhere on the way); `until` as readDirFd's. */
  readDir(dir: string, until?: (name: string) => boolean): DirEntry[] {
    const fd = openBeneath(this.rootFd, toRelative(dir), O_DIRECTORY | O_NOFOLLOW | fs.constants.O_RDONLY);
    try {
      return readDirFd(fd, until);
    } finally {
      fs.closeSync(fd);
    }
  }

  /** Forget pinned directories at or below `path` (after rename/rmdir). */
  invalidate(path: string): void {
    for (const [dir, fd] of this.dirs) {
      if (isAtOrBelow(dir, path)) {
        this.dirs.delete(dir);
        fs.closeSync(fd);
      }
    }
  }

  close(): void {
    if (this.closed) return;
    this.closed = true;
    for (const fd of this.dirs.values()) fs.closeSync(fd);
    this.dirs.clear();
    fs.closeSync(this.rootFd);
  }
}
