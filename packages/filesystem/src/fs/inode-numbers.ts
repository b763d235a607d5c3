// Inode numbers derived from the host file, stable across mounts (`stableInodes`).
//
// libfuse's own node ids (the default) change at every mount, so a guest `git status`
// on a fresh mount finds every st_ino different from its index and re-reads every file.
// Host numbers as they are (`useIno`) are unsafe under virtiofsd, which identifies an
// inode by (st_ino, st_dev) and reaches it through the libfuse node (a path) it first
// looked up: two names sharing a number (a hard link), or a new file reusing a deleted
// file's host number, become one virtiofsd inode bound to a name that may be gone.
//
// So, as 64 bits (high half carried to the shim in st_dev, see setattr-shim.c):
// - a directory or a file with one link: low 32 bits = the host inode number (what git
//   compares: it keeps 32 bits), high 31 bits = a hash of (host dev, high inode bits,
//   birth time). Two live files of one host fs differ in the low half; a file that
//   reuses a deleted file's number differs in the birth time, hence in the high half.
// - a non-directory with several host links: top bits 10, the other 62 bits from
//   SipHash-2-4 under the tree's key (below) of (dev, ino, birth time, guest path): each
//   name its own number, as with libfuse's ids, so no virtiofsd inode is shared between
//   names. A guest chooses its names, so the number must not be a plain hash of them
//   (the FNV/fmix32 mix used before had ~32 bits of freedom: full 64-bit collisions
//   among 70k random names). With a secret 128-bit key a guest cannot aim at another
//   name's number, and 62 bits leave ~1e-7 expected collisions among a million names.
// - virtual files: 0xC0000000 in the high half, their own small number below.
//
// The key: 16 random bytes in the xattr `user.iii.inokey` of the tree's host root (the
// upper layer's for layers), made at the first stableInodes mount and read by every later
// one, so numbers stay the same across remounts. `user.iii.*` names are the package's own:
// a guest can neither read, list, set nor remove them (host-meta.ts). Where it cannot be
// stored (read-only host fs, no user xattrs), the mount uses a random key of its own: numbers
// of linked files' names then change at each mount, all others stay stable.
import crypto from "node:crypto";
import fs from "node:fs";
import { ErrnoError } from "../host/errno.js";
import { lgetxattr, lsetxattr } from "../host/libc.js";
import type { Attr } from "./tree.js";
import { S_IFDIR, S_IFMT } from "./tree.js";

const FNV_OFFSET = 0x811c9dc5;
const FNV_PRIME = 0x01000193;

function mixU32(h: number, v: number): number {
  let x = h;
  for (let i = 0; i < 4; i++) {
    x ^= (v >>> (i * 8)) & 0xff;
    x = Math.imul(x, FNV_PRIME);
  }
  return x >>> 0;
}

function mixNumber(h: number, v: number): number {
  // Non-negative integers up to 2^53 (inode numbers, device numbers, times in ns/µs).
  return mixU32(mixU32(h, v % 0x100000000), Math.floor(v / 0x100000000));
}

/** Final avalanche (murmur3 fmix32), so nearby inputs spread over the whole range. */
function finish(h: number): number {
  let x = h >>> 0;
  x ^= x >>> 16;
  x = Math.imul(x, 0x85ebca6b);
  x ^= x >>> 13;
  x = Math.imul(x, 0xc2b2ae35);
  x ^= x >>> 16;
  return x >>> 0;
}

export interface InodeNumber {
  hi: number;
  lo: number;
}

/**
 * Birth time in whole ms (0 when the host fs does not record one). The shim computes the same numbers for the
 * requests it answers (setattr-shim.c, stable_number): Node's birthtimeMs is sec * 1e3 + nsec / 1e6 in doubles,
 * and its floor is what C gets from the same two operations.
 */
function birthMillis(a: Attr): number {
  return Math.floor(a.birthtime ?? 0);
}

export function stableInodeNumber(a: Attr, guestPath: string, key: InodeKey | undefined = a.inodeKey): InodeNumber {
  const hostIno = a.ino;
  const btime = birthMillis(a);
  if ((a.mode & S_IFMT) !== S_IFDIR && a.nlink > 1) {
    if (!key || key.length !== INODE_KEY_BYTES) throw new Error("stableInodeNumber: a linked file's number needs the tree's 16-byte key");
    const path = Buffer.from(guestPath, "utf8");
    const msg = Buffer.allocUnsafe(24 + path.length);
    writeU64(msg, 0, a.dev);
    writeU64(msg, 8, hostIno);
    writeU64(msg, 16, btime);
    path.copy(msg, 24);
    const h = siphash24(key, msg);
    return { hi: (0x80000000 | (h.hi & 0x3fffffff)) >>> 0, lo: h.lo };
  }
  const h = mixNumber(mixNumber(mixNumber(FNV_OFFSET, a.dev), Math.floor(hostIno / 0x100000000)), btime);
  return { hi: finish(h) & 0x7fffffff, lo: hostIno % 0x100000000 };
}

/** Non-negative integers up to 2^53 as 8 little-endian bytes (the shim writes its uint64_t the same way). */
function writeU64(b: Buffer, at: number, v: number): void {
  b.writeUInt32LE(v % 0x100000000, at);
  b.writeUInt32LE(Math.floor(v / 0x100000000), at + 4);
}

/** The tree's key for the numbers of linked files' names (16 bytes). */
export type InodeKey = Uint8Array;
export const INODE_KEY_BYTES = 16;
/** Where the key lives: an xattr of the tree's host root, in the namespace the guest never reaches (host-meta.ts). */
export const INODE_KEY_XATTR = "user.iii.inokey";
const XATTR_CREATE = 1;
const EEXIST = -17;
const ENODATA = -61;
/** Keys in use in this process, by the host root's dev:ino: one key per tree even when it could not be stored. */
const keys = new Map<string, InodeKey>();

/**
 * The key of the tree whose host root is `rootPath` (a path that reaches the directory itself, e.g.
 * /proc/self/fd/<rootFd>/.): the stored one, else a new one stored there (a concurrent first mount's wins),
 * else, when it cannot be stored, one of this process's own. `stored` tells which.
 */
export function loadInodeKey(rootPath: string): { key: InodeKey; stored: boolean } {
  const st = fs.statSync(rootPath);
  const id = `${st.dev}:${st.ino}`;
  const read = (): InodeKey | null => {
    try {
      const v = lgetxattr(rootPath, INODE_KEY_XATTR);
      return v.length === INODE_KEY_BYTES ? new Uint8Array(v) : null;
    } catch (err) {
      if (err instanceof ErrnoError && err.errno === ENODATA) return null;
      throw err;
    }
  };
  let key: InodeKey | null = null;
  try {
    key = read();
    if (!key) {
      const fresh = new Uint8Array(crypto.randomBytes(INODE_KEY_BYTES));
      try {
        lsetxattr(rootPath, INODE_KEY_XATTR, fresh, XATTR_CREATE);
        key = fresh;
      } catch (err) {
        // Another mount stored one first (or a malformed value is there: replaced, numbers of linked names change once).
        if (!(err instanceof ErrnoError) || err.errno !== EEXIST) throw err;
        key = read();
        if (!key) {
          lsetxattr(rootPath, INODE_KEY_XATTR, fresh, 0);
          key = fresh;
        }
      }
    }
    keys.set(id, key);
    return { key, stored: true };
  } catch {
    // Read-only host fs, no user xattrs, not the owner: stable for this process only.
    let own = keys.get(id);
    if (!own) {
      own = new Uint8Array(crypto.randomBytes(INODE_KEY_BYTES));
      keys.set(id, own);
    }
    return { key: own, stored: false };
  }
}

/** SipHash-2-4 (Aumasson & Bernstein) of `msg` under a 16-byte key, as two 32-bit halves; the shim has the same. */
export function siphash24(key: Uint8Array, msg: Uint8Array): { hi: number; lo: number } {
  const kb = Buffer.from(key.buffer, key.byteOffset, key.length);
  const k0l = kb.readUInt32LE(0), k0h = kb.readUInt32LE(4), k1l = kb.readUInt32LE(8), k1h = kb.readUInt32LE(12);
  // v0..v3 as high and low 32-bit halves.
  let v0h = k0h ^ 0x736f6d65, v0l = k0l ^ 0x70736575;
  let v1h = k1h ^ 0x646f7261, v1l = k1l ^ 0x6e646f6d;
  let v2h = k0h ^ 0x6c796765, v2l = k0l ^ 0x6e657261;
  let v3h = k1h ^ 0x74656462, v3l = k1l ^ 0x79746573;
  const round = (): void => {
    let lo: number, t: number;
    // v0 += v1; v1 = rotl(v1, 13); v1 ^= v0; v0 = rotl(v0, 32)
    lo = (v0l >>> 0) + (v1l >>> 0);
    v0h = (v0h + v1h + (lo > 0xffffffff ? 1 : 0)) | 0;
    v0l = lo | 0;
    t = (v1h << 13) | (v1l >>> 19);
    v1l = (v1l << 13) | (v1h >>> 19);
    v1h = t ^ v0h;
    v1l ^= v0l;
    t = v0h;
    v0h = v0l;
    v0l = t;
    // v2 += v3; v3 = rotl(v3, 16); v3 ^= v2
    lo = (v2l >>> 0) + (v3l >>> 0);
    v2h = (v2h + v3h + (lo > 0xffffffff ? 1 : 0)) | 0;
    v2l = lo | 0;
    t = (v3h << 16) | (v3l >>> 16);
    v3l = (v3l << 16) | (v3h >>> 16);
    v3h = t ^ v2h;
    v3l ^= v2l;
    // v0 += v3; v3 = rotl(v3, 21); v3 ^= v0
    lo = (v0l >>> 0) + (v3l >>> 0);
    v0h = (v0h + v3h + (lo > 0xffffffff ? 1 : 0)) | 0;
    v0l = lo | 0;
    t = (v3h << 21) | (v3l >>> 11);
    v3l = (v3l << 21) | (v3h >>> 11);
    v3h = t ^ v0h;
    v3l ^= v0l;
    // v2 += v1; v1 = rotl(v1, 17); v1 ^= v2; v2 = rotl(v2, 32)
    lo = (v2l >>> 0) + (v1l >>> 0);
    v2h = (v2h + v1h + (lo > 0xffffffff ? 1 : 0)) | 0;
    v2l = lo | 0;
    t = (v1h << 17) | (v1l >>> 15);
    v1l = (v1l << 17) | (v1h >>> 15);
    v1h = t ^ v2h;
    v1l ^= v2l;
    t = v2h;
    v2h = v2l;
    v2l = t;
  };
  const len = msg.length;
  const full = len - (len % 8);
  const byte = (i: number): number => msg[i] ?? 0;
  const word = (at: number): number => byte(at) | (byte(at + 1) << 8) | (byte(at + 2) << 16) | (byte(at + 3) << 24);
  for (let at = 0; at < full; at += 8) {
    const ml = word(at), mh = word(at + 4);
    v3h ^= mh;
    v3l ^= ml;
    round();
    round();
    v0h ^= mh;
    v0l ^= ml;
  }
  // Last block: the remaining bytes, the length's low byte on top.
  let bl = 0, bh = (len & 0xff) << 24;
  for (let i = 0; i < len - full; i++) {
    if (i < 4) bl |= byte(full + i) << (8 * i);
    else bh |= byte(full + i) << (8 * (i - 4));
  }
  v3h ^= bh;
  v3l ^= bl;
  round();
  round();
  v0h ^= bh;
  v0l ^= bl;
  v2l ^= 0xff;
  for (let i = 0; i < 4; i++) round();
  return { hi: (v0h ^ v1h ^ v2h ^ v3h) >>> 0, lo: (v0l ^ v1l ^ v2l ^ v3l) >>> 0 };
}

export const VIRTUAL_INODE_HI = 0xc0000000;

/** Nonzero 32-bit key shared by every name of one host file (the shim's link groups). */
export function linkGroupKey(a: Attr): number {
  return (finish(mixNumber(mixNumber(FNV_OFFSET, a.dev), a.ino)) | 1) >>> 0;
}
