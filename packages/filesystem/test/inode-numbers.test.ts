// `stableInodes`: st_ino derived from the host file, the same at every mount of the same
// tree, never shared by two files, shared by every name of a hard-linked file and unchanged
// when the file gains or loses links (virtiofsd finds the inode of a name it unlinks by the
// number the name stats with: a number that changed at `ln a b` made the guest's `rm a` EIO).
import fs from "node:fs";
import path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { mountPassthrough, type MountHandle, type MountStats } from "../src/index.js";
import { stableInodeNumber } from "../src/fs/inode-numbers.js";
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
    // An unmount that fails (UnmountTimeout names where the server waited) fails the file, after the clean-up.
    const failures: unknown[] = [];
    for (const h of handles) await h.unmount().catch((e: unknown) => failures.push(e));
    if (base) rmrf(base);
    if (failures.length > 0) throw failures[0];
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

  it("different files never share a number; the names of a hard link share their file's, through ln and rm", async () => {
    const { mnt } = await mount("m3");
    const all = await inodes(mnt);
    // One number per host file: as many numbers as the host has (dev, ino) pairs.
    const files = new Set([...all.keys()].map((rel) => {
      const st = fs.lstatSync(path.join(root, rel));
      return `${st.dev}:${st.ino}`;
    }));
    expect(new Set(all.values()).size).toBe(files.size);
    expect(files.size).toBe(all.size - 2);
    // The hard-linked pair: one number, 2 links each.
    const links = await shOk("stat -c '%h %i' d/h1 d/h2", mnt);
    const [h1, h2] = links.trim().split("\n").map((l) => l.split(" "));
    expect(h1).toEqual(["2", h2?.[1]]);
    expect(h2?.[0]).toBe("2");
    // The number a name has before `ln` is the one every name has after it, and after the first name goes
    // (the design before gave linked files a number per name: `a` changed number at `ln a b`).
    const seq = await shOk("set -e; echo x > a; stat -c %i a; ln a b; stat -c %i a b; rm a; stat -c %i b; cat b; rm b", mnt);
    const nums = seq.trim().split("\n");
    expect(nums).toHaveLength(5);
    expect(nums.slice(0, 4)).toEqual([nums[0], nums[0], nums[0], nums[0]]);
    expect(nums[4]).toBe("x");
  });

  it("names the host renames while a node of the old name lives get numbers of their own; a fresh mount the stable ones", async () => {
    // virtiofsd holds an O_PATH fd per guest inode and finds the inode of a looked-up name by its number: with the
    // old name's number on the new name it reused the old node, reached only by the gone path (ENOENT in the guest).
    const { mnt, handle } = await mount("h1");
    fs.mkdirSync(path.join(root, "hr", "d"), { recursive: true });
    fs.writeFileSync(path.join(root, "hr", "d", "x"), "inside\n");
    fs.writeFileSync(path.join(root, "hr", "f"), "file\n");
    const script = `
import os, sys
m, h = sys.argv[1], sys.argv[2]
held = [os.open(m + "/hr/" + n, os.O_PATH) for n in ("d", "f")]
old = [os.fstat(fd).st_ino for fd in held]
os.rename(h + "/hr/d", h + "/hr/d2")
os.rename(h + "/hr/f", h + "/hr/f2")
new = [os.stat(m + "/hr/" + n).st_ino for n in ("d2", "f2")]
print(*old)
print(*new)
print(open(m + "/hr/d2/x").read().strip(), open(m + "/hr/f2").read().strip(), os.stat(m + "/hr/f2").st_ino == new[1])
for fd in held: os.close(fd)
`;
    fs.writeFileSync(path.join(base, "host-rename.py"), script);
    const out = (await shOk(`python3 ${path.join(base, "host-rename.py")} ${mnt} ${root}`, base)).trim().split("\n");
    const [oldD, oldF] = (out[0] ?? "").split(" ").map(BigInt);
    const [newD, newF] = (out[1] ?? "").split(" ").map(BigInt);
    const stable = (rel: string): bigint => {
      const n = stableInodeNumber(statToAttr(fs.lstatSync(path.join(root, rel)), true));
      return (BigInt(n.hi) << 32n) | BigInt(n.lo);
    };
    expect([oldD, oldF]).toEqual([stable("hr/d2"), stable("hr/f2")]);
    // Before: the same numbers as the held nodes (what made virtiofsd reuse them).
    expect(newD).not.toBe(oldD);
    expect(newF).not.toBe(oldF);
    expect([(newD ?? 0n) >> 32n, (newF ?? 0n) >> 32n]).toEqual([0xa0000000n, 0xa0000000n]);
    expect(out[2]).toBe("inside file True");
    await handle.unmount();
    // A fresh mount has no old nodes: the stable numbers again.
    const again = await mount("h2");
    expect((await inodes(again.mnt)).get("./hr/d2")).toBe(String(stable("hr/d2")));
    expect((await inodes(again.mnt)).get("./hr/f2")).toBe(String(stable("hr/f2")));
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

  it("with a worker share's options, git status after a remount opens no more files than a warm one", async () => {
    // packages/worker/src/launch/plan.ts's share options (no kernel caching, a quiet server) plus stable numbers,
    // which the worker sets only where the guest alone writes. Stats pushed every 100 ms here only to read the counts.
    const share = {
      allowOther: true,
      cache: { entryTimeoutSec: 0, attrTimeoutSec: 0, negativeTimeoutSec: 0, kernelCache: false },
      statsPushMs: 100,
      watchIntervalMs: 5000,
    };
    const mnt = path.join(base, "w1");
    fs.mkdirSync(mnt);
    const opens = async (h: MountHandle, script: string): Promise<number> => {
      await new Promise((r) => setTimeout(r, 250));
      const before = h.stats().ops.open ?? 0;
      await shOk(script, mnt);
      await new Promise((r) => setTimeout(r, 250));
      return (h.stats().ops.open ?? 0) - before;
    };
    const first = await mountPassthrough({ root, mountpoint: mnt, ...share, stableInodes: true });
    handles.push(first);
    await shOk("set -e; mkdir wrepo; cd wrepo; for i in $(seq 1 200); do echo $i > f$i; done; sleep 1.1; git init -q; git add .; git -c user.email=t@e -c user.name=t commit -qm init; git status --porcelain >/dev/null", mnt);
    await first.unmount();
    const status = "cd wrepo && git status --porcelain";
    const counts = async (stableInodes: boolean): Promise<{ cold: number; warm: number }> => {
      const h = await mountPassthrough({ root, mountpoint: mnt, ...share, stableInodes });
      handles.push(h);
      const cold = await opens(h, status);
      const warm = await opens(h, status);
      await h.unmount();
      return { cold, warm };
    };
    const stable = await counts(true);
    expect(stable.cold).toBeLessThanOrEqual(stable.warm + 10);
    // Without stable numbers every file is re-read (200 opens and more): what the comparison above would see.
    const plain = await counts(false);
    expect(plain.cold).toBeGreaterThan(plain.warm + 150);
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
    // Only the four names of the hard-linked files (their link-group tags) reach the JS thread.
    expect(js(after, "getattr") - js(before, "getattr")).toBeLessThanOrEqual(4);
    expect(js(after, "readdir") - js(before, "readdir")).toBe(0);
    expect((after.shimOps?.getattr ?? 0) - (before.shimOps?.getattr ?? 0)).toBeGreaterThan(400);
    // What inode-numbers.ts makes of the host's own stat, for every name, listed or looked up (ASCII or not).
    for (const [rel, ino] of st) {
      const guest = rel === "." ? "/" : rel.slice(1);
      const n = stableInodeNumber(statToAttr(fs.lstatSync(path.join(root, guest)), true));
      expect([rel, ino]).toEqual([rel, String((BigInt(n.hi) << 32n) | BigInt(n.lo))]);
      expect([rel, dino.get(rel)]).toEqual([rel, ino]);
    }
    expect(st.has("./d/e/hé")).toBe(true);
  });

  it("a host inode number reused by a new file (another birth time) gets another number", () => {
    const attr = { mode: 0o100644, uid: 0, gid: 0, size: 0, dev: 65024, nlink: 1, ino: 2180058, rdev: 0, blksize: 4096, blocks: 0, atime: 0, mtime: 0, ctime: 0 };
    const old = stableInodeNumber({ ...attr, birthtime: 1_796_471_874_211.423 });
    const reused = stableInodeNumber({ ...attr, birthtime: 1_796_471_874_215.423 });
    expect(old.lo).toBe(2180058);
    expect(reused.lo).toBe(2180058);
    expect(reused.hi).not.toBe(old.hi);
    // Other device, same inode number: another high half.
    expect(stableInodeNumber({ ...attr, dev: 65025, birthtime: 1_796_471_874_211.423 }).hi).not.toBe(old.hi);
    // Top bit clear (virtual files have 0xC... in the high half); the link count plays no part.
    expect(old.hi & 0x80000000).toBe(0);
    expect(stableInodeNumber({ ...attr, nlink: 3, birthtime: 1_796_471_874_211.423 })).toEqual(old);
  });

  it("a read-only mount changes nothing on the host root, and its numbers are the writable mount's", async () => {
    const ro = path.join(base, "ro-root");
    fs.mkdirSync(ro);
    await shOk("set -e; echo a > a; ln a b; mkdir d; echo c > d/c", ro);
    const xattrs = `getfattr -d -m - -e hex ${JSON.stringify(ro)} 2>/dev/null; true`;
    const before = { ctime: fs.statSync(ro).ctimeMs, xattrs: await shOk(xattrs, base) };
    const at = async (name: string, readOnly: boolean): Promise<Map<string, string>> => {
      const mnt = path.join(base, name);
      fs.mkdirSync(mnt);
      const h = await mountPassthrough({ root: ro, mountpoint: mnt, stableInodes: true, readOnly });
      handles.push(h);
      const m = await inodes(mnt);
      await h.unmount();
      return m;
    };
    const numbers = await at("r1", true);
    // Before, the first stableInodes mount stored a key (user.iii.inokey) at the host root: a read-only one too.
    expect({ ctime: fs.statSync(ro).ctimeMs, xattrs: await shOk(xattrs, base) }).toEqual(before);
    expect(numbers.size).toBe(5);
    expect(await at("r2", false)).toEqual(numbers);
  });

  it("without the preloaded shim (in-process) stableInodes falls back to libfuse's numbers with one warning", async () => {
    // Before, such a mount failed to start (InvalidOptions).
    const mnt = path.join(base, "inproc");
    fs.mkdirSync(mnt);
    const warnings = await collectWarnings(async () => {
      const h = await mountPassthrough({ root, mountpoint: mnt, stableInodes: true, isolation: "in-process" });
      // In-process: this process serves the mount, so only async calls on it, and unmounted here whatever
      // happens (the afterAll's synchronous clean-up of the temp tree would block on it).
      try {
        const ino = (await fs.promises.stat(path.join(mnt, "d", "f7"), { bigint: true })).ino;
        expect(ino).not.toBe(BigInt(fs.statSync(path.join(root, "d", "f7")).ino));
        expect(ino < 1n << 32n).toBe(true);
      } finally {
        await h.unmount();
      }
    });
    expect(warnings).toEqual([expect.stringMatching(/^stableInodes off for .*inproc: the setattr shim is not preloaded/)]);
    await expect(mountPassthrough({ root, mountpoint: mnt, stableInodes: true, useIno: true })).rejects.toMatchObject({ code: "InvalidOptions" });
    expect(fs.readFileSync("/proc/self/mountinfo", "utf8")).not.toContain(` ${mnt} `);
  });

  it("a tree on a file system without birth times gets libfuse's numbers with one warning, and mounts", async () => {
    // A FUSE mount has no birth times (statx gives no STATX_BTIME), as NFS has none: a reused host inode number
    // could not be told from the file before it, so stable numbers are off for such a tree.
    const src = path.join(base, "nobtime-src");
    const mnt = path.join(base, "nobtime");
    fs.mkdirSync(src);
    fs.mkdirSync(mnt);
    const plain = await mountPassthrough({ root, mountpoint: src });
    handles.push(plain);
    expect(fs.statSync(src, { bigint: true }).birthtimeNs).toBe(0n);
    const warnings = await collectWarnings(async () => {
      const h = await mountPassthrough({ root: src, mountpoint: mnt, stableInodes: true });
      handles.push(h);
      const ino = fs.statSync(path.join(mnt, "d", "f7"), { bigint: true }).ino;
      // Stable numbers would carry a hash in the high half (see the first test); libfuse's ids have none.
      expect(ino < 1n << 32n).toBe(true);
      expect(fs.readFileSync(path.join(mnt, "d", "f7"), "utf8")).toBe("file 7\n");
      await h.unmount();
    });
    expect(warnings).toEqual([expect.stringMatching(/^stableInodes off for .*nobtime: .*nobtime-src is on a file system without birth times/)]);
    await plain.unmount();
  });
});

/** The IiiStableInodesOff warnings this process emits while `run` runs. */
async function collectWarnings(run: () => Promise<void>): Promise<string[]> {
  const seen: string[] = [];
  const on = (w: Error & { code?: string }): void => {
    if (w.code === "IiiStableInodesOff") seen.push(w.message);
  };
  process.on("warning", on);
  try {
    await run();
    await new Promise((r) => setImmediate(r));
  } finally {
    process.off("warning", on);
  }
  return seen;
}
