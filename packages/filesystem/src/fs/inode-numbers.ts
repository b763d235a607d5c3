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
// - a non-directory with several host links: top bit set, the rest a hash of (dev, ino,
//   birth time, guest path): each name its own number, as with libfuse's ids, so no
//   virtiofsd inode is shared between names.
// - virtual files: 0xC0000000 in the high half, their own small number below.
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

/** Over the UTF-8 bytes of `s` (the shim hashes the path bytes libfuse hands it). */
function mixString(h: number, s: string): number {
  let x = h;
  for (const b of Buffer.from(s, "utf8")) x = mixU32(x, b);
  return x >>> 0;
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

export function stableInodeNumber(a: Attr, guestPath: string): InodeNumber {
  const hostIno = a.ino;
  const btime = birthMillis(a);
  if ((a.mode & S_IFMT) !== S_IFDIR && a.nlink > 1) {
    let h = mixNumber(mixNumber(mixNumber(FNV_OFFSET, a.dev), hostIno), btime);
    h = mixString(h, guestPath);
    const lo = finish(h);
    const hi = (0x80000000 | (finish(mixU32(h, lo)) & 0x3fffffff)) >>> 0;
    return { hi, lo };
  }
  const h = mixNumber(mixNumber(mixNumber(FNV_OFFSET, a.dev), Math.floor(hostIno / 0x100000000)), btime);
  return { hi: finish(h) & 0x7fffffff, lo: hostIno % 0x100000000 };
}

export const VIRTUAL_INODE_HI = 0xc0000000;

/** Nonzero 32-bit key shared by every name of one host file (the shim's link groups). */
export function linkGroupKey(a: Attr): number {
  return (finish(mixNumber(mixNumber(FNV_OFFSET, a.dev), a.ino)) | 1) >>> 0;
}
