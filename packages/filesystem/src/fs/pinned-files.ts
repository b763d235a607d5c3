// Files whose kernel node lost its name while the file lives on under another name (or is still in use).
//
// virtiofsd answers a LINK with the source's inode, so after `ln a b; rm a` in a guest, `b` is the guest
// inode of `a`, and virtiofsd reaches it through the host node of `a`. libfuse 2's high level finds a node
// only by its name, which `rm a` removed: `cat b` got ENOENT until the guest looked `b` up again. The shim
// (setattr-shim.c, sixth job) turns the UNLINK of a linked file's name into libfuse's own rename of that
// node to `/.iii-unlinked-<nodeid>`; GuestFs then pins the host file here (an O_PATH fd), unlinks the
// host name, and answers that node's requests through `/proc/self/fd/<pin>`. When the kernel forgets the
// node, the shim reports it and the pin is closed. Never a host name: link counts stay exact.
import fs from "node:fs";
import { Errno, fail } from "../host/errno.js";
import { getxattrFollow, listxattrFollow, removexattrFollow, setxattrFollow, utimensatFollow, type TimeSpec } from "../host/libc.js";
import { encodeOverride, guestMeta, hostPerms, mergeAttr, needsOverride, OVERRIDE_XATTR, decodeOverride, type GuestOverride } from "./host-meta.js";
import { S_IFMT, S_IFREG, statToAttr, type Attr } from "./tree.js";

/** Guest paths of hidden nodes: libfuse's name for them, never a host name, refused to the guest by name. */
export const HIDDEN_PREFIX = "/.iii-unlinked-";
/** At most this many pins are kept: the oldest is closed first (its node then answers ENOENT, as before). */
export const MAX_PINS = 4096;

export interface Pin {
  fd: number;
  /** false for a file of a read-only layer (an image's own hard links): written only after a copy-up, which it cannot have. */
  writable: boolean;
}

export function isHiddenName(path: string): boolean {
  return path.startsWith(HIDDEN_PREFIX) && !path.includes("/", 1);
}

const O_PATH = 0o10000000;
const O_NOFOLLOW = fs.constants.O_NOFOLLOW;
const O_CLOEXEC = 0o2000000;

/** An O_PATH pin on the regular file at `hostPath`, or undefined when it is not one. */
export function pinHostFile(hostPath: string, writable: boolean): Pin | undefined {
  const fd = fs.openSync(hostPath, O_PATH | O_NOFOLLOW | O_CLOEXEC);
  if ((fs.fstatSync(fd).mode & S_IFMT) !== S_IFREG) {
    fs.closeSync(fd);
    return undefined;
  }
  return { fd, writable };
}

export class PinnedFiles {
  private readonly pins = new Map<string, Pin>();

  get size(): number {
    return this.pins.size;
  }

  add(path: string, pin: Pin): void {
    this.drop(path);
    this.pins.set(path, pin);
    while (this.pins.size > MAX_PINS) {
      const oldest = this.pins.keys().next().value as string;
      this.drop(oldest);
    }
  }

  drop(path: string): void {
    const pin = this.pins.get(path);
    if (!pin) return;
    this.pins.delete(path);
    fs.closeSync(pin.fd);
  }

  /** The pin of a hidden path; ENOENT when it has none (released, or never pinned). */
  get(path: string): Pin {
    const pin = this.pins.get(path);
    if (!pin) fail(Errno.ENOENT, "unlinked");
    return pin;
  }

  private static proc(pin: Pin): string {
    return `/proc/self/fd/${pin.fd}`;
  }

  private static override(pin: Pin): GuestOverride | null {
    const v = getxattrFollow(PinnedFiles.proc(pin), OVERRIDE_XATTR);
    return v ? decodeOverride(v) : null;
  }

  private writable(pin: Pin, readOnly: boolean): void {
    if (readOnly || !pin.writable) fail(Errno.EROFS, "unlinked file of a read-only layer");
  }

  getattr(path: string, birthTimes: boolean): Attr {
    const pin = this.get(path);
    return mergeAttr(statToAttr(fs.fstatSync(pin.fd) as fs.Stats, birthTimes), PinnedFiles.override(pin));
  }

  open(path: string, hostFlags: number, write: boolean, readOnly: boolean): number {
    const pin = this.get(path);
    if (write) this.writable(pin, readOnly);
    return fs.openSync(PinnedFiles.proc(pin), hostFlags & ~O_NOFOLLOW);
  }

  truncate(path: string, size: number, readOnly: boolean): void {
    const pin = this.get(path);
    this.writable(pin, readOnly);
    fs.truncateSync(PinnedFiles.proc(pin), size);
  }

  utimens(path: string, atime: TimeSpec, mtime: TimeSpec, readOnly: boolean): void {
    const pin = this.get(path);
    this.writable(pin, readOnly);
    utimensatFollow(PinnedFiles.proc(pin), atime, mtime);
  }

  /** chmod/chown as PassthroughTree does them, on the pinned file. */
  setMeta(path: string, change: (m: GuestOverride) => GuestOverride, readOnly: boolean): void {
    const pin = this.get(path);
    this.writable(pin, readOnly);
    const st = fs.fstatSync(pin.fd);
    const o = PinnedFiles.override(pin);
    const next = change(guestMeta(st, o));
    const perms = hostPerms(next.mode);
    fs.chmodSync(PinnedFiles.proc(pin), perms);
    if (o || needsOverride(next, { mode: (st.mode & S_IFMT) | perms, uid: st.uid, gid: st.gid, rdev: 0 })) {
      setxattrFollow(PinnedFiles.proc(pin), OVERRIDE_XATTR, encodeOverride(next), 0);
    }
  }

  getxattr(path: string, hostName: string): Buffer {
    const v = getxattrFollow(PinnedFiles.proc(this.get(path)), hostName);
    if (!v) fail(Errno.ENODATA, "getxattr");
    return v;
  }

  setxattr(path: string, hostName: string, value: Buffer, flags: number, readOnly: boolean): void {
    const pin = this.get(path);
    this.writable(pin, readOnly);
    setxattrFollow(PinnedFiles.proc(pin), hostName, value, flags);
  }

  listxattr(path: string): string[] {
    return listxattrFollow(PinnedFiles.proc(this.get(path)));
  }

  removexattr(path: string, hostName: string, readOnly: boolean): void {
    const pin = this.get(path);
    this.writable(pin, readOnly);
    removexattrFollow(PinnedFiles.proc(pin), hostName);
  }

  close(): void {
    for (const path of [...this.pins.keys()]) this.drop(path);
  }
}
