// The numbers of a linked file's names (`stableInodes`): SipHash-2-4 under a 16-byte key kept at the tree's host
// root (inode-numbers.ts). A guest picks its names, so it must neither find two that share a number (one virtiofsd
// inode for both) nor read or change the key that decides them; the numbers must stay the same across remounts.
import crypto from "node:crypto";
import fs from "node:fs";
import { createRequire } from "node:module";
import path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type * as KoffiNs from "koffi";
import { mountPassthrough, type MountHandle } from "../src/index.js";
import { INODE_KEY_XATTR, loadInodeKey, siphash24, stableInodeNumber } from "../src/fs/inode-numbers.js";
import { statToAttr } from "../src/fs/tree.js";
import { fuse, rmrf, sh, shOk, tempDir } from "./helpers.js";

const hex = (h: { hi: number; lo: number }): string => ((BigInt(h.hi) << 32n) | BigInt(h.lo)).toString(16).padStart(16, "0");
const u64 = (h: { hi: number; lo: number }): bigint => (BigInt(h.hi) << 32n) | BigInt(h.lo);

describe("SipHash-2-4 and the per-name numbers", () => {
  it("matches the reference vectors (key 00..0f; messages 00.. of length 0 and 15)", () => {
    const key = Uint8Array.from({ length: 16 }, (_, i) => i);
    const msg = (n: number): Uint8Array => Uint8Array.from({ length: n }, (_, i) => i);
    expect(hex(siphash24(key, msg(0)))).toBe("726fdb47dd0e0e31");
    expect(hex(siphash24(key, msg(15)))).toBe("a129ca6149be45e5");
  });

  it("the shim computes the same hash (random keys, messages of 0-100 bytes)", () => {
    const so = new URL("../dist/libiii-setattr-shim.so", import.meta.url).pathname;
    expect(fs.existsSync(so)).toBe(true);
    const koffi = createRequire(import.meta.url)("koffi") as typeof KoffiNs;
    const c = koffi.load(so).func("uint64_t iii_siphash24(const uint8_t *key, const uint8_t *msg, size_t len)");
    for (let i = 0; i < 2000; i++) {
      const key = crypto.randomBytes(16);
      const msg = crypto.randomBytes(i % 101);
      const js = siphash24(key, msg);
      expect([i, BigInt.asUintN(64, BigInt(c(key, msg, msg.length) as number | bigint))]).toEqual([i, u64(js)]);
    }
  });

  it("1,000,000 random names of one linked file: no two share a 64-bit number (~1e-7 expected), low halves as random", () => {
    const key = crypto.randomBytes(16);
    const attr = { mode: 0o100644, uid: 0, gid: 0, size: 0, dev: 65024, nlink: 2, ino: 2180058, rdev: 0, blksize: 4096, blocks: 0, atime: 0, mtime: 0, ctime: 0, birthtime: 1_796_471_874_211 };
    const n = 1_000_000;
    const all = new BigUint64Array(n);
    const seed = crypto.randomBytes(n * 6);
    for (let i = 0; i < n; i++) {
      const name = `/d/${seed.subarray(i * 6, i * 6 + 6).toString("base64url")}-${i}`;
      const num = stableInodeNumber(attr, name, key);
      // Top bits 10: never a single-link file's number (top bit 0) nor a virtual file's (0xC...).
      if ((num.hi & 0xc0000000) >>> 0 !== 0x80000000) throw new Error(`bad high bits ${hex(num)} for ${name}`);
      all[i] = u64(num);
    }
    all.sort();
    let same64 = 0;
    for (let i = 1; i < n; i++) if (all[i] === all[i - 1]) same64++;
    expect(same64).toBe(0);
    // The low 32 bits alone: n^2 / 2^33 ≈ 116 pairs expected for random numbers (the old mix had full 64-bit ones).
    const lows = new Uint32Array(n);
    for (let i = 0; i < n; i++) lows[i] = Number((all[i] ?? 0n) & 0xffffffffn);
    lows.sort();
    let same32 = 0;
    for (let i = 1; i < n; i++) if (lows[i] === lows[i - 1]) same32++;
    expect(same32).toBeGreaterThan(50);
    expect(same32).toBeLessThan(250);
  });

  it("another key, another number for every name; no key, no number", () => {
    const attr = { mode: 0o100644, uid: 0, gid: 0, size: 0, dev: 65024, nlink: 3, ino: 42, rdev: 0, blksize: 4096, blocks: 0, atime: 0, mtime: 0, ctime: 0, birthtime: 0 };
    const k1 = crypto.randomBytes(16);
    const k2 = crypto.randomBytes(16);
    for (const name of ["/a", "/b/c", "/é"]) {
      expect(stableInodeNumber(attr, name, k1)).toEqual(stableInodeNumber(attr, name, Buffer.from(k1)));
      expect(stableInodeNumber(attr, name, k1)).not.toEqual(stableInodeNumber(attr, name, k2));
    }
    expect(() => stableInodeNumber(attr, "/a")).toThrow(/key/);
    // Single-link files and directories keep the host number in the low half, no key needed (what git compares).
    expect(stableInodeNumber({ ...attr, nlink: 1 }, "/a").lo).toBe(42);
  });

  it("where the key cannot be stored, one key per tree for the life of the process", () => {
    const a = loadInodeKey("/proc/self");
    const b = loadInodeKey("/proc/self");
    expect(a.stored).toBe(false);
    expect(b.key).toEqual(a.key);
    expect(a.key.length).toBe(16);
  });
});

describe.skipIf(!fuse.ok)("the tree's key through mounts", () => {
  let base: string;
  const handles: MountHandle[] = [];
  const TREE = "set -e; mkdir -p d; echo one > d/a; ln d/a d/b; ln d/a 'd/é'; echo two > c; ln c c2";
  const LINKED = ["d/a", "d/b", "d/é", "c", "c2"];

  beforeAll(() => {
    base = tempDir("inokey");
    for (const t of ["t1", "t2"]) fs.mkdirSync(path.join(base, t));
  });

  afterAll(async () => {
    for (const h of handles) await h.unmount().catch(() => undefined);
    if (base) rmrf(base);
  });

  async function mount(tree: string, name: string): Promise<{ mnt: string; handle: MountHandle }> {
    const mnt = path.join(base, name);
    fs.mkdirSync(mnt, { recursive: true });
    const handle = await mountPassthrough({ root: path.join(base, tree), mountpoint: mnt, stableInodes: true });
    handles.push(handle);
    return { mnt, handle };
  }

  async function numbers(mnt: string): Promise<string[]> {
    return (await shOk(`stat -c '%i' ${LINKED.map((n) => `'${n}'`).join(" ")}`, mnt)).trim().split("\n");
  }

  it("a first mount stores a key at the host root; numbers are the same after a remount and differ with another tree's key", async () => {
    const t1 = path.join(base, "t1");
    const t2 = path.join(base, "t2");
    const a = await mount("t1", "m1");
    await shOk(TREE, a.mnt);
    const key1 = loadInodeKey(t1).key;
    expect(key1.length).toBe(16);
    const first = await numbers(a.mnt);
    expect(new Set(first).size).toBe(LINKED.length);
    // Every number is the keyed one, for lookups (JS) and listings (the shim).
    const listed = await shOk("find . -name 'c*' -printf '%i %p\\n' -o -path './d/*' -printf '%i %p\\n'", a.mnt);
    for (const [i, rel] of LINKED.entries()) {
      const n = stableInodeNumber(statToAttr(fs.lstatSync(path.join(t1, rel)), true), `/${rel}`, key1);
      expect([rel, first[i]]).toEqual([rel, String(u64(n))]);
      expect(listed).toContain(`${u64(n)} ./${rel}\n`);
    }
    await a.handle.unmount();
    const again = await mount("t1", "m1");
    expect(await numbers(again.mnt)).toEqual(first);
    expect(loadInodeKey(t1).key).toEqual(key1);

    const b = await mount("t2", "m2");
    await shOk(TREE, b.mnt);
    const key2 = loadInodeKey(t2).key;
    expect(Buffer.from(key2).equals(Buffer.from(key1))).toBe(false);
    const other = await numbers(b.mnt);
    for (const [i, rel] of LINKED.entries()) {
      const attr = statToAttr(fs.lstatSync(path.join(t2, rel)), true);
      expect(other[i]).toBe(String(u64(stableInodeNumber(attr, `/${rel}`, key2))));
      expect(other[i]).not.toBe(String(u64(stableInodeNumber(attr, `/${rel}`, key1))));
    }
  });

  it("the guest can neither read, list, set nor remove the key (attack)", async () => {
    const t1 = path.join(base, "t1");
    const { mnt } = await mount("t1", "m3");
    await shOk("test -e d/a", mnt);
    const key = Buffer.from(loadInodeKey(t1).key);
    const get = await sh(`getfattr -n ${INODE_KEY_XATTR} --only-values . ; getfattr -n ${INODE_KEY_XATTR} --only-values d/a`, mnt);
    expect(get.code).not.toBe(0);
    expect(get.stdout).toBe("");
    expect(await shOk("getfattr -d -m - -e hex . 2>&1; getfattr -d -m 'user.iii' -e hex . 2>&1; true", mnt)).not.toContain("inokey");
    const set = await sh(`setfattr -n ${INODE_KEY_XATTR} -v 0x00000000000000000000000000000000 .`, mnt);
    expect(set.code).not.toBe(0);
    expect(set.stderr).toMatch(/not permitted/i);
    const remove = await sh(`setfattr -x ${INODE_KEY_XATTR} .`, mnt);
    expect(remove.code).not.toBe(0);
    // Nothing changed on the host, and no file stands for the key.
    expect(Buffer.from(loadInodeKey(t1).key).equals(key)).toBe(true);
    expect((await shOk("ls -A .", mnt)).split("\n").filter(Boolean).sort()).toEqual(["c", "c2", "d"]);
  });
});
