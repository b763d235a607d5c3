// Inode numbers derived from the host file, stable across mounts (`stableInodes`).
//
// libfuse's own node ids (the default) change at every mount, so a guest `git status`
// on a fresh mount finds every st_ino different from its index and re-reads every file.
// Host numbers as they are (`useIno`) are unsafe under virtiofsd, which identifies an
// inode by (st_ino, st_dev) and reaches it through the libfuse node (a path) it first
// looked up: two names sharing a number (a hard link), or a new file reusing a deleted
// file's host number, become one virtiofsd inode bound to a name that may be gone.
//
// So, as 64 bits (high half carried to the shim in st_dev, see setattr-shim.c), one number per FILE, never per
// name: low 32 bits = the host inode number (what git compares: it keeps 32 bits), high 31 bits = a hash of (host
// dev, high inode bits, birth time). Two live files of one host fs differ in the low half; a file that reuses a
// deleted file's number differs in the birth time, hence in the high half. Every name of a hard-linked file has
// its file's number, and the number does not change when the file gains or loses links: virtiofsd (QEMU's
// passthrough_ll, lookup_name) finds the inode of a name it unlinks, renames or removes by the number the name
// stats with, and answers EIO when it holds no inode with that number. Per-name numbers for linked files (the
// design before) changed `a`'s number at `ln a b`, so the guest's `rm a` failed with EIO. A name of a linked file
// that goes away stays readable through the shim's hidden nodes (setattr-shim.c, sixth job), as with libfuse's
// node ids. Virtual files: 0xC0000000 in the high half, their own small number below.
import type { Attr } from "./tree.js";

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

/** The file's number; every name of one host file gets the same (see above). */
export function stableInodeNumber(a: Attr): InodeNumber {
  const hostIno = a.ino;
  const h = mixNumber(mixNumber(mixNumber(FNV_OFFSET, a.dev), Math.floor(hostIno / 0x100000000)), birthMillis(a));
  return { hi: finish(h) & 0x7fffffff, lo: hostIno % 0x100000000 };
}

export const VIRTUAL_INODE_HI = 0xc0000000;

/** Nonzero 32-bit key shared by every name of one host file (the shim's link groups). */
export function linkGroupKey(a: Attr): number {
  return (finish(mixNumber(mixNumber(FNV_OFFSET, a.dev), a.ino)) | 1) >>> 0;
}
