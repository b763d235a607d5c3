// Nothing the guest writes is privileged on the host.
//
// The guest may set any mode (setuid, setgid, sticky), any owner, make device nodes,
// FIFOs and sockets, and set security.capability. None of that reaches the host file:
// the host file is an ordinary file or directory (or symlink) owned by the mount's
// host owner, with only the permission bits 0775 (no setuid/setgid/sticky, not
// world-writable); a guest device node, FIFO or socket is an empty regular file with
// mode 0600. What the guest set is kept in an "override" xattr on the host file and
// merged back into what the guest sees (getattr, readdir types).
//
// Guest xattrs outside `user.*` (security.*, trusted.*, the POSIX ACLs) are stored on
// the host as `user.iii.x.<name>` and shown back under their real names, so a guest
// `setcap` works in the guest and leaves no security.capability on the host. The
// reserved `user.iii.*` names are invisible to the guest and cannot be set by it.
import { Errno, fail } from "../host/errno.js";
import { lgetxattrRawBuf, lsetxattr } from "../host/libc.js";
import type { DirEntry } from "../host/libc.js";
import { S_IFBLK, S_IFCHR, S_IFDIR, S_IFIFO, S_IFLNK, S_IFMT, S_IFREG, S_IFSOCK, type Attr } from "./tree.js";

/** Host xattr holding the guest's view of a regular file or directory. */
export const OVERRIDE_XATTR = "user.iii.override";
/** Same for symlinks, which cannot carry user.* xattrs (needs a root server; best effort otherwise). */
export const SYMLINK_OVERRIDE_XATTR = "trusted.iii.override";
/** A guest trusted.* name in its stored form, as virtiofsd's xattrmap sends it. */
export const TRUSTED_ALIAS_PREFIX = "user.iii.x.trusted.";
/** Host names starting with this are ours: never shown to, set or removed by the guest. */
export const RESERVED_XATTR_PREFIX = "user.iii.";
/** Guest xattrs outside user.* live on the host under this prefix + their full name. */
export const MAPPED_XATTR_PREFIX = "user.iii.x.";

const OVERRIDE_VERSION = 1;
const OVERRIDE_SIZE = 24;
const S_ISUID = 0o4000;
const S_ISGID = 0o2000;
/** Permission bits a host regular file or directory may carry. */
const HOST_PERM_MASK = 0o775;
/** Host mode of the regular file standing in for a guest device node, FIFO or socket. */
const SPECIAL_HOST_PERMS = 0o600;

/** What the guest set and the host file must not carry. */
export interface GuestOverride {
  /** Full st_mode: file type and all of 07777. */
  mode: number;
  uid: number;
  gid: number;
  /** Device number (st_rdev) of a character or block device, else 0. */
  rdev: number;
}

export interface HostOwner {
  uid: number;
  gid: number;
}

/** How a tree creates host entries on behalf of the guest. */
export interface HostPolicy {
  /** Host owner of every file, directory and symlink created for the guest. */
  owner: HostOwner;
  /** The guest caller of the current creating operation (its uid/gid go into the override). */
  caller(): { uid: number; gid: number };
}

/**
 * Binary encoding, 24 bytes: u8 version (1), 3 reserved zero bytes, then little-endian
 * u32 mode, u32 uid, u32 gid, u64 rdev.
 */
export function encodeOverride(o: GuestOverride): Buffer {
  const b = Buffer.alloc(OVERRIDE_SIZE);
  b[0] = OVERRIDE_VERSION;
  b.writeUInt32LE(o.mode >>> 0, 4);
  b.writeUInt32LE(o.uid >>> 0, 8);
  b.writeUInt32LE(o.gid >>> 0, 12);
  b.writeBigUInt64LE(BigInt(o.rdev), 16);
  return b;
}

/** null for anything that is not a well-formed version-1 override (then the host stat is shown). */
export function decodeOverride(b: Uint8Array): GuestOverride | null {
  if (b.length !== OVERRIDE_SIZE || b[0] !== OVERRIDE_VERSION || b[1] !== 0 || b[2] !== 0 || b[3] !== 0) return null;
  const buf = Buffer.from(b.buffer, b.byteOffset, b.length);
  const mode = buf.readUInt32LE(4);
  if (!isGuestType(mode & S_IFMT) || mode & ~(S_IFMT | 0o7777)) return null;
  return { mode, uid: buf.readUInt32LE(8), gid: buf.readUInt32LE(12), rdev: Number(buf.readBigUInt64LE(16)) };
}

function isGuestType(t: number): boolean {
  return t === S_IFREG || t === S_IFDIR || t === S_IFLNK || t === S_IFIFO || t === S_IFSOCK || t === S_IFCHR || t === S_IFBLK;
}

/** Guest types stored as an empty regular host file. */
export function isSpecialType(t: number): boolean {
  return t === S_IFIFO || t === S_IFSOCK || t === S_IFCHR || t === S_IFBLK;
}

/** Permission bits of the host file for a guest mode. */
export function hostPerms(guestMode: number): number {
  return isSpecialType(guestMode & S_IFMT) ? SPECIAL_HOST_PERMS : guestMode & HOST_PERM_MASK;
}

/** The host type that stands for a guest type. */
export function hostTypeOf(guestType: number): number {
  return isSpecialType(guestType) ? S_IFREG : guestType;
}

function overrideName(hostType: number): string | null {
  if (hostType === S_IFREG || hostType === S_IFDIR) return OVERRIDE_XATTR;
  if (hostType === S_IFLNK) return SYMLINK_OVERRIDE_XATTR;
  return null;
}

const readBuf = Buffer.alloc(64);
const overrideNameBuf = Buffer.from(`${OVERRIDE_XATTR}\0`);
const symlinkOverrideNameBuf = Buffer.from(`${SYMLINK_OVERRIDE_XATTR}\0`);
// Paths for lgetxattr go through one reused buffer: a koffi string argument per call
// (every getattr, every name a readdir lists) measurably inflated the server's RSS.
let pathBuf = Buffer.alloc(4096);

function putPath(at: number, s: string): number {
  const need = at + Buffer.byteLength(s) + 1;
  if (need > pathBuf.length) {
    const bigger = Buffer.alloc(need * 2);
    pathBuf.copy(bigger, 0, 0, at);
    pathBuf = bigger;
  }
  const end = at + pathBuf.write(s, at, "utf8");
  pathBuf[end] = 0;
  return end;
}

function overrideAt(hostType: number): GuestOverride | null {
  const name = hostType === S_IFLNK ? symlinkOverrideNameBuf : overrideNameBuf;
  const n = lgetxattrRawBuf(pathBuf, name, readBuf);
  return n > 0 ? decodeOverride(readBuf.subarray(0, n)) : null;
}

/** The override of the host entry at `hostPath` (of host type `hostMode & S_IFMT`), if any. */
export function readOverride(hostPath: string, hostMode: number): GuestOverride | null {
  const hostType = hostMode & S_IFMT;
  if (overrideName(hostType) === null) return null;
  putPath(0, hostPath);
  return overrideAt(hostType);
}

/** Writes the override; for a symlink a failure (non-root server) is ignored unless `strict`. */
export function writeOverride(hostPath: string, hostType: number, o: GuestOverride, strict: boolean): void {
  const name = overrideName(hostType);
  if (name === null) fail(Errno.EPERM, "override on a host special file");
  try {
    lsetxattr(hostPath, name, encodeOverride(o), 0);
  } catch (err) {
    if (strict || hostType !== S_IFLNK) throw err;
  }
}

interface HostStatLike {
  mode: number;
  uid: number;
  gid: number;
  rdev: number;
}

/** The guest's view of an entry: its override merged over the host stat. */
export function guestMeta(st: HostStatLike, o: GuestOverride | null): GuestOverride {
  if (!o) return { mode: st.mode, uid: st.uid, gid: st.gid, rdev: st.rdev };
  const hostType = st.mode & S_IFMT;
  const wanted = o.mode & S_IFMT;
  // The override may only turn a host regular file into a guest special file; a host
  // directory or symlink always stays what it is.
  const type = hostType === S_IFREG && (wanted === S_IFREG || isSpecialType(wanted)) ? wanted : hostType;
  const perms = type === S_IFLNK ? st.mode & 0o7777 : o.mode & 0o7777;
  return { mode: type | perms, uid: o.uid, gid: o.gid, rdev: type === S_IFCHR || type === S_IFBLK ? o.rdev : 0 };
}

/** Attr with the guest's mode, owner and rdev. */
export function mergeAttr(a: Attr, o: GuestOverride | null): Attr {
  if (!o) return a;
  const m = guestMeta(a, o);
  a.mode = m.mode;
  a.uid = m.uid;
  a.gid = m.gid;
  a.rdev = m.rdev;
  return a;
}

/** Does the host entry (type, owner, mode) fail to show `m` by itself? */
export function needsOverride(m: GuestOverride, host: HostStatLike): boolean {
  const hostType = host.mode & S_IFMT;
  if ((m.mode & S_IFMT) !== hostType) return true;
  if (m.uid !== host.uid || m.gid !== host.gid) return true;
  if (hostType === S_IFLNK) return false;
  return (m.mode & 0o7777) !== (host.mode & 0o7777);
}

/** Fixes getdents types (DT_REG on the host) of entries whose override names another type. */
export function fixDirentTypes(entries: DirEntry[], hostDirPath: string): void {
  const prefix = putPath(0, `${hostDirPath}/`);
  for (const e of entries) {
    if (e.type !== 8 /* DT_REG */) continue;
    putPath(prefix, e.name);
    const o = overrideAt(S_IFREG);
    if (o && isSpecialType(o.mode & S_IFMT)) e.type = (o.mode & S_IFMT) >> 12;
  }
}

/**
 * Owner and setgid inheritance for a new entry: the caller's uid; the parent's gid when
 * the parent directory is setgid in the guest's view (a new directory inherits the bit).
 */
export function newEntryMeta(mode: number, rdev: number, caller: { uid: number; gid: number }, parent: GuestOverride): GuestOverride {
  const inherit = (parent.mode & S_ISGID) !== 0;
  let m = mode;
  if (inherit && (mode & S_IFMT) === S_IFDIR) m |= S_ISGID;
  const type = m & S_IFMT;
  return { mode: m, uid: caller.uid, gid: inherit ? parent.gid : caller.gid, rdev: type === S_IFCHR || type === S_IFBLK ? rdev : 0 };
}

export { S_ISUID, S_ISGID };

// ---- xattr names --------------------------------------------------------------

export const ACL_ACCESS = "system.posix_acl_access";
const ACL_NAMES = new Set([ACL_ACCESS, "system.posix_acl_default"]);

/**
 * The host name for a guest xattr name. Throws ENODATA (get) or EPERM (set/remove)
 * for the reserved user.iii.* names, EOPNOTSUPP for namespaces Linux does not have.
 */
export function hostXattrName(guestName: string, op: "get" | "set" | "remove"): string {
  // The stored form of a guest trusted.* name is accepted as itself: virtiofsd (no CAP_SYS_ADMIN, which the
  // host kernel wants for trusted.*) is told to send the guest's trusted.* this way (its xattrmap).
  if (guestName.startsWith(TRUSTED_ALIAS_PREFIX) && guestName.length > TRUSTED_ALIAS_PREFIX.length) return guestName;
  if (guestName.startsWith("user.")) {
    if (guestName.startsWith(RESERVED_XATTR_PREFIX)) fail(op === "get" ? Errno.ENODATA : Errno.EPERM, `${op}xattr: reserved name`);
    return guestName;
  }
  if (guestName.startsWith("security.") || guestName.startsWith("trusted.") || ACL_NAMES.has(guestName)) {
    return MAPPED_XATTR_PREFIX + guestName;
  }
  fail(Errno.EOPNOTSUPP, `${op}xattr: unsupported namespace`);
}

/** The guest name of a host xattr, or null when the guest must not see it. */
export function guestXattrName(hostName: string): string | null {
  if (hostName.startsWith(MAPPED_XATTR_PREFIX)) {
    const g = hostName.slice(MAPPED_XATTR_PREFIX.length);
    return g.startsWith("security.") || g.startsWith("trusted.") || ACL_NAMES.has(g) ? g : null;
  }
  if (hostName.startsWith(RESERVED_XATTR_PREFIX)) return null;
  if (hostName.startsWith("user.")) return hostName;
  // The host's own security.*, trusted.* and system.* attributes are not the guest's.
  return null;
}

/**
 * The permission bits a POSIX access ACL (xattr format: u32 version 2, then entries of
 * u16 tag, u16 perm, u32 id) gives the file, and whether it says no more than the mode
 * does (then a filesystem keeps only the mode, as Linux's posix_acl_equiv_mode decides).
 * null when the value is not a valid ACL.
 */
export function aclModeBits(value: Uint8Array): { perms: number; equivalent: boolean } | null {
  const b = Buffer.from(value.buffer, value.byteOffset, value.length);
  if (b.length < 4 || (b.length - 4) % 8 !== 0 || b.readUInt32LE(0) !== 2) return null;
  let perms = 0;
  let mask = -1;
  let equivalent = true;
  for (let off = 4; off < b.length; off += 8) {
    const tag = b.readUInt16LE(off);
    const perm = b.readUInt16LE(off + 2) & 7;
    if (tag === 0x01) perms |= perm << 6; // ACL_USER_OBJ
    else if (tag === 0x04) perms |= perm << 3; // ACL_GROUP_OBJ
    else if (tag === 0x20) perms |= perm; // ACL_OTHER
    else if (tag === 0x10) {
      mask = perm; // ACL_MASK: the group bits show the mask
      equivalent = false;
    } else if (tag === 0x02 || tag === 0x08) equivalent = false; // ACL_USER, ACL_GROUP
    else return null;
  }
  if (mask >= 0) perms = (perms & ~0o070) | (mask << 3);
  return { perms, equivalent };
}
