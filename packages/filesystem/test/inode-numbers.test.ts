// `stableInodes`: st_ino derived from the host file, the same at every mount of the same
// tree, never shared by two files, and never shared by two names of a hard-linked file
// (what keeps virtiofsd from binding one inode to a name that may go away).
import fs from "node:fs";
import path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { mountPassthrough, type MountHandle, type MountStats } from "../src/index.js";
import { loadInodeKey, stableInodeNumber } from "../src/fs/inode-numbers.js";
import { statToAttr } from "../src/fs/tree.js";
import { fuse, rmrf, shOk, tempDir } from "./helpers.js";

const TREE = String.raw`
set -e
mkdir -p d/e/f
for i in $(seq 1 300); do echo "file $i" > d/f$i; done
for i in $(seq 1 50); do mkdir d/e/dir$i; echo x > d/e/dir$i/inner; done
ln -s f1 d/link1
echo linked > d/h1 && ln d/h1 d/h2
echo other > d/e/hé && ln d/e/hé d/e/hé2
`;

/** path → st_ino (stat) for every entry under the mount; with `dIno`, d_ino from readdir (find -printf %i). */
async function inodes(mnt: string, dIno = false): Promise<Map<string, string>> {
  const out = await shOk(dIno ? "find . -printf '%i %p\\n'" : "find . -exec stat -c '%i %n' {} +", mnt);
  const m = new Map<string, string>();
  for (const line of out.split("\n")) {
    if (!line) continue;
    const sp = line.indexOf(" ");
    m.set(line.slice(sp + 1), line.slice(0, sp));
  }
  return m;
}

describe.skipIf(!fuse.ok)("stable inode numbers", () => {
  let base: string;
  let root: string;
  const handles: MountHandle[] = [];

  beforeAll(async () => {
    base = tempDir("ino");
    root = path.join(base, "root");
    fs.mkdirSync(root);
    await shOk(TREE, root);
  });

  afterAll(async () => {
    for (const h of handles) await h.unmount().catch(() => undefined);
    if (base) rmrf(base);
  });

  async function mount(name: string): Promise<{ mnt: string; handle: MountHandle }> {
    const mnt = path.join(base, name);
    fs.mkdirSync(mnt);
    const handle = await mountPassthrough({ root, mountpoint: mnt, stableInodes: true });
    handles.push(handle);
    return { mnt, handle };
  }

  it("two mounts of one tree, and a remount, report the same st_ino for every entry", async () => {
    const a = await mount("m1");
    const b = await mount("m2");
    const first = await inodes(a.mnt);
    const second = await inodes(b.mnt);
    expect(first.size).toBeGreaterThan(400);
    expect(second).toEqual(first);
    // readdir's d_ino is the same number as st_ino.
    expect(await inodes(b.mnt, true)).toEqual(first);
    await a.handle.unmount();
    const again = await mountPassthrough({ root, mountpoint: a.mnt, stableInodes: true });
    handles.push(again);
    expect(await inodes(a.mnt)).toEqual(first);
    // The low 32 bits are the host's inode number (what git keeps in its index).
    const hostIno = fs.statSync(path.join(root, "d", "f7")).ino;
    expect(BigInt(first.get("./d/f7") as string) & 0xffffffffn).toBe(BigInt(hostIno));
  });

  it("different files never share a number, nor do the two names of a hard link", async () => {
    const { mnt } = await mount("m3");
    const all = await inodes(mnt);
    const numbers = [...all.values()];
    expect(new Set(numbers).size).toBe(numbers.length);
    // The hard-linked pair: two names, two numbers, each stable (checked above), 2 links each.
    const links = await shOk("stat -c '%h %i' d/h1 d/h2", mnt);
    const [h1, h2] = links.trim().split("\n").map((l) => l.split(" "));
    expect(h1?.[0]).toBe("2");
    expect(h2?.[0]).toBe("2");
    expect(h1?.[1]).not.toBe(h2?.[1]);
  });

  it("git status on a fresh mount finds its index up to date (no re-read, no index rewrite)", async () => {
    const a = await mount("g1");
    // The files' second is over before git writes its index: else git finds them "racily clean" and rewrites the
    // index at every status, on any file system.
    await shOk("set -e; mkdir repo; cd repo; for i in $(seq 1 100); do echo $i > f$i; done; sleep 1.1; git init -q; git add .; git -c user.email=t@e -c user.name=t commit -qm init; git status --porcelain", a.mnt);
    const index = path.join(root, "repo", ".git", "index");
    const before = await shOk("cd repo && git ls-files --debug | grep ino: | md5sum", a.mnt);
    const mtimeBefore = fs.statSync(index).mtimeMs;
    await a.handle.unmount();
    const b = await mount("g2");
    const status = await shOk("cd repo && git status --porcelain", b.mnt);
    expect(status).toBe("");
    expect(await shOk("cd repo && git ls-files --debug | grep ino: | md5sum", b.mnt)).toBe(before);
    // git rewrites the index when it had to refresh stat data that no longer matched.
    expect(fs.statSync(index).mtimeMs).toBe(mtimeBefore);
  });

  it("the shim answers lookups and listings with the numbers the JS side computes (setattr-shim.c, stable_number)", async () => {
    const { mnt, handle } = await mount("c1");
    const settled = async (): Promise<MountStats> => {
      await new Promise((r) => setTimeout(r, 400)); // stats are a snapshot at most 250 ms old
      return handle.stats();
    };
    const before = await settled();
    const st = await inodes(mnt);
    const dino = await inodes(mnt, true);
    const after = await settled();
    const js = (s: MountStats, op: string): number => (s.ops[op] ?? 0) - (s.shimOps?.[op] ?? 0);
    // Only the four names of the hard-linked files (numbers per guest name, link-group tags) reach the JS thread.
    expect(js(after, "getattr") - js(before, "getattr")).toBeLessThanOrEqual(4);
    expect(js(after, "readdir") - js(before, "readdir")).toBe(0);
    expect((after.shimOps?.getattr ?? 0) - (before.shimOps?.getattr ?? 0)).toBeGreaterThan(400);
    // What inode-numbers.ts makes of the host's own stat, for every name, listed or looked up (ASCII or not).
    for (const [rel, ino] of st) {
      const guest = rel === "." ? "/" : rel.slice(1);
      const n = stableInodeNumber(statToAttr(fs.lstatSync(path.join(root, guest)), true), guest, loadInodeKey(root).key);
      expect([rel, ino]).toEqual([rel, String((BigInt(n.hi) << 32n) | BigInt(n.lo))]);
      expect([rel, dino.get(rel)]).toEqual([rel, ino]);
    }
    expect(st.has("./d/e/hé")).toBe(true);
  });

  it("a host inode number reused by a new file (another birth time) gets another number", () => {
    const attr = { mode: 0o100644, uid: 0, gid: 0, size: 0, dev: 65024, nlink: 1, ino: 2180058, rdev: 0, blksize: 4096, blocks: 0, atime: 0, mtime: 0, ctime: 0 };
    const old = stableInodeNumber({ ...attr, birthtime: 1_796_471_874_211.423 }, "/x");
    const reused = stableInodeNumber({ ...attr, birthtime: 1_796_471_874_215.423 }, "/x");
    expect(old.lo).toBe(2180058);
    expect(reused.lo).toBe(2180058);
    expect(reused.hi).not.toBe(old.hi);
    // Other device, same inode number: another high half.
    expect(stableInodeNumber({ ...attr, dev: 65025, birthtime: 1_796_471_874_211.423 }, "/x").hi).not.toBe(old.hi);
    // Top bit: only names of hard-linked files.
    expect(old.hi & 0x80000000).toBe(0);
    expect(stableInodeNumber({ ...attr, nlink: 2 }, "/x", new Uint8Array(16)).hi & 0x80000000).not.toBe(0);
  });

  it("without the preloaded shim (in-process) stableInodes is refused before mounting", async () => {
    const mnt = path.join(base, "inproc");
    fs.mkdirSync(mnt);
    await expect(mountPassthrough({ root, mountpoint: mnt, stableInodes: true, isolation: "in-process" })).rejects.toMatchObject({ code: "InvalidOptions" });
    await expect(mountPassthrough({ root, mountpoint: mnt, stableInodes: true, useIno: true })).rejects.toMatchObject({ code: "InvalidOptions" });
    expect(fs.readFileSync("/proc/self/mountinfo", "utf8")).not.toContain(` ${mnt} `);
  });
});
