// The guest's view: a Tree plus injected virtual files, read-only mode and name
// validation. This is where every refusal errno is decided; the FUSE shell only
// converts callbacks.
import fs from "node:fs";
import { Errno, ErrnoError, fail } from "../host/errno.js";
import { isAtOrBelow, isValidGuestPath, splitParent } from "../core/guest-path.js";
import type { DirEntry, TimeSpec } from "../host/libc.js";
import { hostOpenFlags, isWriteOpen, PassthroughTree } from "./passthrough-tree.js";
import { isHiddenName, HIDDEN_PREFIX, PinnedFiles } from "./pinned-files.js";
import { ACL_ACCESS, aclModeBits, guestXattrName, hostXattrName } from "./host-meta.js";
import type { Attr, FsStats, Tree } from "./tree.js";
import { VirtualFiles } from "./virtual-files.js";
import { linkGroupKey, stableInodeNumber, VIRTUAL_INODE_HI } from "./inode-numbers.js";
import { LayeredTree } from "./layered-tree.js";
import type { DiskQuota } from "../host/fuse-caller.js";
import { S_IFMT, S_IFREG } from "./tree.js";

/** FUSE file handles at and above this value are virtual files; below are host fds. */
const VIRTUAL_FH_BASE = 0x40000000;
/**
 * A virtual file handle carries its read-only fd in the low 20 bits (the shim reads it there, setattr-shim.c's
 * eighth job) and a counter in the 10 bits above, so handles of one file differ.
 */
const VIRTUAL_FD_BITS = 20;
const VIRTUAL_FD_LIMIT = 1 << VIRTUAL_FD_BITS;
const VIRTUAL_SEQ_LIMIT = 1 << 10;

const DT_DIR = 4;
const DT_REG = 8;

export class GuestFs {
  readonly tree: Tree;
  readonly virtual: VirtualFiles;
  readonly readOnly: boolean;
  /** st_ino from the host file (inode-numbers.ts), its high half in `dev` for the shim. */
  readonly stableInodes: boolean;
  /**
   * The shim's link groups (setattr-shim.c), when preloaded: after `rm a` or `ln a b`, every
   * other cached name of the file drops its attributes, so its link count is exact at once.
   */
  linkGroups: ((key: number) => number) | null = null;
  /**
   * The shim's hides (setattr-shim.c, sixth job; pinned-files.ts): the node whose name the RENAME being
   * answered hides (0: none), and the hidden nodes the kernel has forgotten since the last call.
   */
  hides: import("../host/fuse-caller.js").ShimHides | null = null;
  /** Hidden nodes' files, pinned until the kernel forgets the node. */
  readonly pinned = new PinnedFiles();
  /**
   * The shim's reads and writes on libfuse's thread (setattr-shim.c, eighth job), when preloaded: stopped
   * before close() closes the fds they use.
   */
  shimIo: import("../host/fuse-caller.js").ShimIo | null = null;
  /** The writable layer's disk limit (a layered tree only): see LayeredTree.quota and setattr-shim.c's tenth job. */
  private diskQuota: DiskQuota | null = null;
  /** Open virtual handles → how many opens share the number (it repeats after 1,024 opens of one file). */
  private readonly virtualHandles = new Map<number, number>();
  private virtualSeq = 0;
  // After close() the host fds are gone and their numbers may be reused by anything
  // else in this process: requests still queued behind a lazy unmount must not use them.
  private closed = false;

  /** MountOptions.protectedPaths: read-only for the guest, and so are the names of the directories above them. */
  private readonly protectedPaths: readonly string[];
  /** MountOptions.protectedNames: entries of these names, at any depth, are read-only for the guest. */
  private readonly protectedNames: ReadonlySet<string>;

  constructor(
    tree: Tree,
    virtual: VirtualFiles,
    readOnly: boolean,
    stableInodes = false,
    protectedPaths: readonly string[] = [],
    protectedNames: readonly string[] = [],
  ) {
    this.tree = tree;
    this.virtual = virtual;
    this.readOnly = readOnly;
    this.stableInodes = stableInodes;
    this.protectedPaths = protectedPaths;
    this.protectedNames = new Set(protectedNames);
    if (stableInodes) tree.birthTimes = true;
  }

  get quota(): DiskQuota | null {
    return this.diskQuota;
  }

  set quota(q: DiskQuota | null) {
    if (q && !(this.tree instanceof LayeredTree)) throw new Error("a disk limit needs a layered tree");
    this.diskQuota = q;
    if (this.tree instanceof LayeredTree) this.tree.quota = q;
  }

  private alive(): void {
    if (this.closed) fail(Errno.EIO, "filesystem closed");
  }

  private check(path: string): void {
    this.alive();
    if (!isValidGuestPath(path)) fail(path.includes("/..") ? Errno.EPERM : Errno.EINVAL, "invalid path");
  }

  /** Mutation of an existing entry (chmod, write, unlink...): virtual → EPERM, ro → EROFS. */
  private mutate(path: string): void {
    this.check(path);
    if (this.virtual.covers(path)) fail(Errno.EPERM, "virtual file is read-only");
    if (this.readOnly) fail(Errno.EROFS, "read-only mount");
    this.guardProtected(path, false);
  }

  /** Creation of a new name: existing virtual name → EEXIST, inside a virtual dir → EACCES. */
  private createAt(path: string): void {
    this.check(path);
    if (isHiddenName(path)) fail(Errno.EPERM, "reserved name");
    if (this.virtual.get(path)) fail(Errno.EEXIST, "virtual file exists");
    if (this.virtual.covers(path)) fail(Errno.EACCES, "virtual directory is read-only");
    if (this.readOnly) fail(Errno.EROFS, "read-only mount");
    this.guardProtected(path, true);
  }

  /**
   * EROFS for a protected path or anything below one; with `name` (the name itself is made, removed or moved)
   * also for a directory above one: moving it takes the protected entry along, and a symlink made in its place
   * sends the host's next read elsewhere. Metadata of a directory above one (mode, times, xattrs) stays free.
   */
  private guardProtected(path: string, name: boolean): void {
    for (const p of this.protectedPaths) {
      if (isAtOrBelow(path, p) || (name && isAtOrBelow(p, path))) fail(Errno.EROFS, "protected path");
    }
    // A protected name anywhere on the path: the entry itself or something below it.
    if (this.protectedNames.size > 0 && path.split("/").some((c) => this.protectedNames.has(c))) fail(Errno.EROFS, "protected name");
  }

  getattr(path: string): Attr {
    this.check(path);
    const v = this.virtual.get(path);
    if (v) {
      const a = this.virtual.attr(v);
      if (this.stableInodes) a.dev = VIRTUAL_INODE_HI;
      return a;
    }
    if (this.virtual.covers(path)) fail(Errno.ENOENT, "not in virtual dir");
    const a = isHiddenName(path) ? this.pinned.getattr(path, this.tree.birthTimes ?? false) : this.tree.getattr(path);
    if (this.linkGroups && a.nlink > 1 && (a.mode & S_IFMT) === S_IFREG) {
      a.rdev = linkGroupKey(a);
      // With the key, the file's identity for the shim's one-number-per-file (setattr-shim.c, canon_of).
      if (!this.stableInodes) a.dev = a.ino % 4294967296;
    }
    if (this.stableInodes) {
      const n = stableInodeNumber(a);
      a.ino = n.lo;
      a.dev = n.hi;
    }
    return a;
  }

  readdir(path: string): DirEntry[] {
    this.check(path);
    if (isHiddenName(path)) fail(Errno.ENOTDIR, "readdir");
    const v = this.virtual.get(path);
    if (v) {
      if (v.kind !== "dir") fail(Errno.ENOTDIR, "readdir");
      return this.virtual.childrenOf(path).map((name) => {
        const e = this.virtual.get(this.virtual.pathOf(path, name));
        return { name, ino: e?.ino ?? 0, type: e?.kind === "dir" ? DT_DIR : DT_REG };
      });
    }
    const entries = this.tree.readdir(path);
    if (path !== "/" || this.virtual.rootNames.size === 0) return entries;
    const out = entries.filter((e) => !this.virtual.rootNames.has(e.name));
    for (const name of this.virtual.rootNames) {
      const e = this.virtual.get(`/${name}`);
      out.push({ name, ino: e?.ino ?? 0, type: e?.kind === "dir" ? DT_DIR : DT_REG });
    }
    return out;
  }

  readlink(path: string): string {
    this.check(path);
    if (isHiddenName(path)) fail(Errno.EINVAL, "not a symlink");
    if (this.virtual.get(path)) fail(Errno.EINVAL, "not a symlink");
    return this.tree.readlink(path);
  }

  open(path: string, flags: number): number {
    this.check(path);
    const v = this.virtual.get(path);
    if (v) {
      if (v.kind !== "file") fail(Errno.EISDIR, "open");
      if (isWriteOpen(flags)) fail(this.readOnly ? Errno.EROFS : Errno.EACCES, "virtual file is read-only");
      if (v.fd >= VIRTUAL_FD_LIMIT) fail(Errno.EIO, "virtual file fd out of handle range");
      this.virtualSeq = (this.virtualSeq + 1) % VIRTUAL_SEQ_LIMIT;
      const fh = VIRTUAL_FH_BASE + this.virtualSeq * VIRTUAL_FD_LIMIT + v.fd;
      this.virtualHandles.set(fh, (this.virtualHandles.get(fh) ?? 0) + 1);
      return fh;
    }
    if (this.virtual.covers(path)) fail(Errno.ENOENT, "open");
    if (this.readOnly && isWriteOpen(flags)) fail(Errno.EROFS, "read-only mount");
    if (isWriteOpen(flags)) this.guardProtected(path, false);
    const fd = isHiddenName(path) ? this.pinned.open(path, hostOpenFlags(flags), isWriteOpen(flags), this.readOnly) : this.tree.open(path, flags);
    if (flags & fs.constants.O_TRUNC) this.diskQuota?.freed();
    if (fd >= VIRTUAL_FH_BASE) {
      fs.closeSync(fd);
      fail(Errno.EIO, "host fd out of handle range");
    }
    return fd;
  }

  create(path: string, mode: number): number {
    this.createAt(path);
    return this.tree.create(path, mode);
  }

  read(fh: number, buf: Buffer, len: number, pos: number): number {
    this.alive();
    const fd = fh < VIRTUAL_FH_BASE ? fh : this.virtualHandles.has(fh) ? fh % VIRTUAL_FD_LIMIT : undefined;
    if (fd === undefined) fail(Errno.EBADF, "read");
    return fs.readSync(fd, buf, 0, len, pos);
  }

  write(fh: number, buf: Buffer, len: number, pos: number): number {
    this.alive();
    if (fh >= VIRTUAL_FH_BASE) fail(Errno.EBADF, "write to a virtual file");
    if (this.readOnly) fail(Errno.EROFS, "read-only mount");
    // The shim's writes charge only growth; here (before the shim takes writes over, or after it stops) every
    // byte is charged: an O_APPEND fd writes at its end, whatever `pos` says.
    this.diskQuota?.charge(len);
    return fs.writeSync(fh, buf, 0, len, pos);
  }

  release(fh: number): void {
    if (this.closed) return;
    if (fh >= VIRTUAL_FH_BASE) {
      const refs = (this.virtualHandles.get(fh) ?? 1) - 1;
      if (refs > 0) this.virtualHandles.set(fh, refs);
      else this.virtualHandles.delete(fh);
      return;
    }
    fs.closeSync(fh);
    // The last fd of a file whose names are gone frees its blocks.
    this.diskQuota?.freed();
  }

  /** fd to fsync, or null when there is nothing to sync (virtual handle). */
  syncFd(fh: number): number | null {
    return this.closed || fh >= VIRTUAL_FH_BASE || fh === 0 ? null : fh;
  }

  truncate(path: string, size: number): void {
    this.mutate(path);
    if (isHiddenName(path)) {
      this.diskQuota?.resize(this.pinned.getattr(path, false).size, size);
      return this.pinned.truncate(path, size, this.readOnly);
    }
    this.tree.truncate(path, size);
  }

  ftruncate(fh: number, size: number): void {
    this.alive();
    if (fh >= VIRTUAL_FH_BASE) fail(Errno.EPERM, "virtual file is read-only");
    if (this.readOnly) fail(Errno.EROFS, "read-only mount");
    this.diskQuota?.resize(fs.fstatSync(fh).size, size);
    fs.ftruncateSync(fh, size);
  }

  chmod(path: string, mode: number): void {
    this.mutate(path);
    if (isHiddenName(path)) this.pinned.setMeta(path, (m) => ({ ...m, mode: (m.mode & S_IFMT) | (mode & 0o7777) }), this.readOnly);
    else this.tree.chmod(path, mode);
    this.refreshOtherNames(path);
  }

  chown(path: string, uid: number, gid: number): void {
    this.mutate(path);
    const keep = (v: number): boolean => v === -1 || v === 0xffffffff;
    if (isHiddenName(path)) this.pinned.setMeta(path, (m) => ({ ...m, uid: keep(uid) ? m.uid : uid, gid: keep(gid) ? m.gid : gid }), this.readOnly);
    else this.tree.chown(path, uid, gid);
    this.refreshOtherNames(path);
  }

  utimens(path: string, atime: TimeSpec, mtime: TimeSpec): void {
    this.mutate(path);
    if (isHiddenName(path)) return this.pinned.utimens(path, atime, mtime, this.readOnly);
    this.tree.utimens(path, atime, mtime);
  }

  mkdir(path: string, mode: number): void {
    this.createAt(path);
    this.tree.mkdir(path, mode);
  }

  rmdir(path: string): void {
    this.mutate(path);
    this.guardProtected(path, true);
    if (isHiddenName(path)) fail(Errno.ENOTDIR, "rmdir");
    this.tree.rmdir(path);
  }

  unlink(path: string): void {
    this.mutate(path);
    this.guardProtected(path, true);
    if (isHiddenName(path)) fail(Errno.EPERM, "reserved name");
    const key = this.linkGroupOf(path);
    this.tree.unlink(path);
    if (key !== 0) this.linkGroups?.(key);
  }

  /** After a change of mode or owner through one name of a linked file, its other cached names ask again. */
  private refreshOtherNames(path: string): void {
    const key = this.linkGroupOf(path);
    if (key !== 0) this.linkGroups?.(key);
  }

  /** The link group of a multiply-linked regular file at `path`, else 0. */
  private linkGroupOf(path: string): number {
    if (!this.linkGroups) return 0;
    try {
      const a = isHiddenName(path) ? this.pinned.getattr(path, false) : this.tree.getattr(path);
      // A hidden node is a name the file had: its other names are in its group even at one link.
      return (a.nlink > 1 || isHiddenName(path)) && (a.mode & S_IFMT) === S_IFREG ? linkGroupKey(a) : 0;
    } catch {
      return 0;
    }
  }

  rename(from: string, to: string): void {
    if (isHiddenName(to)) return this.hide(from, to);
    this.mutate(from);
    if (isHiddenName(from)) fail(Errno.EPERM, "reserved name");
    // Replacing a virtual file is refused like removing it.
    this.mutate(to);
    this.guardProtected(from, true);
    this.guardProtected(to, true);
    // A replaced target with other names: their link count drops.
    const key = this.linkGroupOf(to);
    this.tree.rename(from, to);
    if (key !== 0) this.linkGroups?.(key);
  }

  symlink(target: string, path: string): void {
    this.createAt(path);
    if (target.includes("\0")) fail(Errno.EINVAL, "symlink target");
    this.tree.symlink(target, path);
  }

  link(from: string, to: string): void {
    this.mutate(from);
    // A hidden node has no host name to link from (see pinned-files.ts); the guest's next lookup finds a name.
    if (isHiddenName(from)) fail(Errno.ENOENT, "unlinked");
    this.createAt(to);
    this.tree.link(from, to);
    const key = this.linkGroupOf(from);
    if (key !== 0) this.linkGroups?.(key);
  }

  mknod(path: string, mode: number, dev: number): void {
    this.createAt(path);
    this.tree.mknod(path, mode, dev);
  }

  statfs(): FsStats {
    this.alive();
    const s = this.tree.statfs();
    if (!this.diskQuota) return s;
    // `df` in the guest shows the limit: its size, and what is left of it (or of the host's space, if less).
    const { usedBytes, limitBytes, usedEntries, limitEntries } = this.diskQuota.state();
    const unit = s.frsize || s.bsize;
    const left = Math.max(0, Math.floor((limitBytes - usedBytes) / unit));
    const entriesLeft = Math.max(0, limitEntries - usedEntries);
    return {
      ...s,
      blocks: Math.floor(limitBytes / unit),
      bfree: Math.min(s.bfree, left),
      bavail: Math.min(s.bavail, left),
      files: limitEntries,
      ffree: Math.min(s.ffree, entriesLeft),
      favail: Math.min(s.favail, entriesLeft),
    };
  }

  access(path: string, mode: number): void {
    this.check(path);
    const W_OK = 2;
    if (this.virtual.get(path)) {
      if (mode & W_OK) fail(this.readOnly ? Errno.EROFS : Errno.EACCES, "virtual file is read-only");
      return;
    }
    if (this.virtual.covers(path)) fail(Errno.ENOENT, "access");
    if (this.readOnly && mode & W_OK) fail(Errno.EROFS, "read-only mount");
    if (isHiddenName(path)) {
      if (!this.pinned.get(path).writable && mode & W_OK) fail(Errno.EROFS, "unlinked file of a read-only layer");
      return;
    }
    this.tree.access(path, mode);
  }

  getxattr(path: string, name: string): Buffer {
    this.check(path);
    if (this.virtual.covers(path)) fail(this.virtual.get(path) ? Errno.ENODATA : Errno.ENOENT, "getxattr");
    if (isHiddenName(path)) return this.pinned.getxattr(path, hostXattrName(name, "get"));
    return this.tree.getxattr(path, hostXattrName(name, "get"));
  }

  setxattr(path: string, name: string, value: Buffer, flags: number): void {
    this.mutate(path);
    const hostName = hostXattrName(name, "set");
    if (isHiddenName(path)) {
      this.diskQuota?.charge(Buffer.byteLength(hostName) + value.length);
      return this.pinned.setxattr(path, hostName, value, flags, this.readOnly);
    }
    if (name === ACL_ACCESS) {
      // The ACL sets the mode's permission bits; one that says no more than the mode
      // is not kept (as on a real filesystem, where `cp -a` leaves no ACL behind).
      const acl = aclModeBits(value);
      if (!acl) fail(Errno.EINVAL, "setxattr: invalid ACL");
      if (!acl.equivalent) this.tree.setxattr(path, hostName, value, flags);
      this.tree.chmod(path, (this.tree.getattr(path).mode & 0o7000) | acl.perms);
      if (acl.equivalent) {
        try {
          this.tree.removexattr(path, hostName);
        } catch (err) {
          if ((err as { errno?: number }).errno !== Errno.ENODATA) throw err;
        }
      }
      return;
    }
    this.tree.setxattr(path, hostName, value, flags);
  }

  listxattr(path: string): string[] {
    this.check(path);
    if (this.virtual.covers(path)) {
      if (this.virtual.get(path)) return [];
      fail(Errno.ENOENT, "listxattr");
    }
    const out: string[] = [];
    for (const hostName of isHiddenName(path) ? this.pinned.listxattr(path) : this.tree.listxattr(path)) {
      const name = guestXattrName(hostName);
      if (name !== null) out.push(name);
    }
    return out;
  }

  removexattr(path: string, name: string): void {
    this.mutate(path);
    if (isHiddenName(path)) return this.pinned.removexattr(path, hostXattrName(name, "remove"), this.readOnly);
    this.tree.removexattr(path, hostXattrName(name, "remove"));
  }

  /**
   * The shim hides `from` (the UNLINK of a linked file's name, turned into libfuse's rename of its node to
   * `to`): pin the host file, then unlink its host name. For a RENAME over `from` (`replacing()`), only the pin:
   * the rename that follows replaces the host name in one step (and if it fails, `from` still names the pinned
   * file). Any other rename onto a hidden name is refused.
   */
  private hide(from: string, to: string): void {
    const node = this.hides?.hiding() ?? 0;
    if (node === 0 || to !== `${HIDDEN_PREFIX}${node}`) fail(Errno.EPERM, "reserved name");
    this.mutate(from);
    this.guardProtected(from, true);
    if (isHiddenName(from)) fail(Errno.EPERM, "reserved name");
    if (this.hides?.replacing()) {
      const pin = this.tree.pin?.(from);
      if (!pin) fail(Errno.EIO, "nothing to pin");
      this.pinned.add(to, pin);
      this.releasePins();
      return;
    }
    let pin;
    try {
      pin = this.tree.pin?.(from);
    } catch {
      pin = undefined; // unlink as before: the node then has no file (ENOENT)
    }
    const key = this.linkGroupOf(from);
    try {
      this.tree.unlink(from);
    } catch (err) {
      if (pin) fs.closeSync(pin.fd);
      throw err;
    }
    if (pin) this.pinned.add(to, pin);
    if (key !== 0) this.linkGroups?.(key);
    this.releasePins();
  }

  /**
   * What the shim needs to answer getattr/utimens/flush/release itself (setattr-shim.c, ninth job): a plain tree
   * (copy-up and whiteouts of layers stay here); with stable inode numbers the shim computes them as
   * inode-numbers.ts does. null otherwise.
   */
  shimFastTree(): import("../host/fuse-caller.js").ShimFastTree | null {
    if (!(this.tree instanceof PassthroughTree)) return null;
    const owner = this.tree.policy.owner;
    return {
      rootFd: this.tree.host.rootFd,
      // Protected paths stay on the JS side, which refuses their changes (the shim would open them for writing);
      // a protected name, at any depth, goes as "/<name>" (setattr-shim.c js_path).
      jsNames: [...new Set([...this.virtual.rootNames, ...this.protectedPaths.map((p) => p.split("/")[1]!), ...[...this.protectedNames].map((n) => `/${n}`)])],
      linkedToJs: this.linkGroups !== null,
      utimens: !this.readOnly,
      owner,
      stableInodes: this.stableInodes,
    };
  }

  /** Closes the pins of hidden nodes the kernel has forgotten. */
  releasePins(): void {
    if (!this.hides || this.closed) return;
    const released = this.hides.takeReleased();
    for (const node of released) this.pinned.drop(`${HIDDEN_PREFIX}${node}`);
    if (released.length > 0) this.diskQuota?.freed();
  }

  close(): void {
    if (this.closed) return;
    this.closed = true;
    this.shimIo?.stop();
    this.pinned.close();
    this.tree.close();
    this.virtual.close();
  }

  /** The dir whose listing changes when `path` is created or removed. */
  static parentOf(path: string): string {
    return splitParent(path)[0];
  }
}

export { ErrnoError };
