// POSIX behaviour the kernel's caches and fuse-native's missing operations used to get
// wrong: link counts right after `ln`, a name that stays readable when another name of
// the same file is removed, and fallocate. Each script runs through a real mount in one
// shell, so a stale kernel cache (attr_timeout 1 s) would show.
import fs from "node:fs";
import path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { mountPassthrough, setattrShimPath, type MountHandle } from "../src/index.js";
import { fuse, rmrf, shOk, tempDir } from "./helpers.js";

const kinds = ["root", "layers"] as const;

describe.skipIf(!fuse.ok)("hard links and fallocate through the mount", () => {
  let base: string;
  const handles: MountHandle[] = [];

  beforeAll(() => {
    base = tempDir("links");
    // The child server with the shim answers link and fallocate (see setattr-shim.c).
    expect(setattrShimPath()).not.toBeNull();
  });

  afterAll(async () => {
    for (const h of handles) await h.unmount().catch(() => undefined);
    if (base) rmrf(base);
  });

  describe.each(kinds)("%s mount", (kind) => {
    let mnt: string;
    let hostDir: string;

    beforeAll(async () => {
      const dir = path.join(base, kind);
      mnt = path.join(dir, "mnt");
      fs.mkdirSync(mnt, { recursive: true });
      if (kind === "root") {
        hostDir = path.join(dir, "root");
        fs.mkdirSync(hostDir);
        handles.push(await mountPassthrough({ root: hostDir, mountpoint: mnt }));
      } else {
        hostDir = path.join(dir, "upper");
        fs.mkdirSync(hostDir);
        fs.mkdirSync(path.join(dir, "lower"));
        handles.push(await mountPassthrough({ layers: { lower: path.join(dir, "lower"), upper: hostDir }, mountpoint: mnt }));
      }
    });

    it("ln a b: both names count two links at once, the source included", async () => {
      // The first stat puts a's attributes (1 link) in the kernel's cache.
      const out = await shOk("set -e; mkdir l1; cd l1; echo hi > a; stat -c %h a; ln a b; stat -c '%n %h' a b", mnt);
      expect(out.split("\n").filter(Boolean)).toEqual(["1", "a 2", "b 2"]);
    });

    it("every cached name follows a link or unlink at once: ln a b c; rm a; ln b d", async () => {
      // Each stat puts that name's attributes in the kernel's cache before the next change.
      const out = await shOk(
        "set -e; mkdir l4; cd l4; echo x > a; ln a b; ln a c; stat -c '%n %h' a b c; rm a; stat -c '%n %h' b c; ln b d; stat -c '%n %h' b c d",
        mnt,
      );
      expect(out.split("\n").filter(Boolean)).toEqual(["a 3", "b 3", "c 3", "b 2", "c 2", "b 3", "c 3", "d 3"]);
    });

    it("renaming over one name of a linked file: the other names count one link less at once", async () => {
      const out = await shOk("set -e; mkdir l6; cd l6; echo x > a; ln a b; echo y > n; stat -c '%n %h' a b; mv n a; stat -c '%n %h' b", mnt);
      expect(out.split("\n").filter(Boolean)).toEqual(["a 2", "b 2", "b 1"]);
    });

    it("a link group key never shows as st_rdev", async () => {
      const out = await shOk("set -e; mkdir l5; cd l5; echo x > a; ln a b; stat -c '%t:%T' a b", mnt);
      expect(out).toBe("0:0\n0:0\n");
    });

    it("ln a b; rm a: b is readable at once", async () => {
      const out = await shOk("set -e; mkdir l2; cd l2; echo content > a; cat a >/dev/null; ln a b; rm a; cat b; test ! -e a && echo gone", mnt);
      expect(out).toBe("content\ngone\n");
    });

    it("ln tmp final && rm tmp && cat final (write-then-publish)", async () => {
      const out = await shOk("set -e; mkdir l3; cd l3; printf published > tmp; ln tmp final && rm tmp && cat final", mnt);
      expect(out).toBe("published");
      expect(fs.readFileSync(path.join(hostDir, "l3", "final"), "utf8")).toBe("published");
    });

    // What virtiofsd does: it holds an O_PATH fd per guest inode and answers LINK with the source's inode, so
    // after `ln a b; rm a` in the guest, `b` is served through the fd of `a`'s node (see pinned-files.ts).
    it("ln a b; rm a through a held O_PATH fd of a (virtiofsd's view): read, write, stat, xattrs, chmod keep working", async () => {
      const script = `
import os, sys, time
d = sys.argv[1]
os.makedirs(d)
with open(d + "/a", "w") as f: f.write("content")
fd = os.open(d + "/a", os.O_PATH)
p = "/proc/self/fd/%d" % fd
os.link(d + "/a", d + "/b")
os.unlink(d + "/a")
print(open(p).read(), os.stat(p).st_nlink, os.stat(d + "/b").st_nlink)
with open(p, "a") as f: f.write("+more")
print(open(p).read())
os.setxattr(p, "user.k", b"v"); print(os.getxattr(d + "/b", "user.k").decode(), "user.k" in os.listxattr(p))
os.chmod(p, 0o640); print(oct(os.stat(p).st_mode & 0o7777), oct(os.stat(d + "/b").st_mode & 0o7777))
os.truncate(p, 3); print(open(p).read(), os.stat(p).st_size)
print(sorted(os.listdir(d)), [n for n in os.listdir(".") if "unlinked" in n])
os.close(fd)
`;
      fs.writeFileSync(path.join(base, "holder.py"), script);
      const out = await shOk(`python3 ${path.join(base, "holder.py")} hold1`, mnt);
      expect(out.split("\n")).toEqual(["content 1 1", "content+more", "v True", "0o640 0o640", "con 3", "['b'] []", ""]);
      expect(fs.readdirSync(hostDir).filter((n) => n.includes("unlinked"))).toEqual([]);
      // The pin is released once the kernel forgets the node (the fd above is closed). A child server's stats
      // arrive pushed: until the first push that counts pins, pinnedFiles is undefined, which is not 0.
      const h = handles[kinds.indexOf(kind)]!;
      const deadline = Date.now() + 10_000;
      while (h.stats().pinnedFiles !== 0 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 200));
      expect(h.stats().pinnedFiles).toBe(0);
    });

    it("ln y z; cat y; mv x y through a held O_PATH fd of y (virtiofsd's view of z): z keeps y's file", async () => {
      // A rename over one name of a linked file hides the replaced node as an unlink does (before: its node lost
      // its name in libfuse, and the guest's `cat z` after `mv x y` got ENOENT).
      const script = `
import os, sys
d = sys.argv[1]
os.makedirs(d)
with open(d + "/y", "w") as f: f.write("old")
with open(d + "/x", "w") as f: f.write("new")
fd = os.open(d + "/y", os.O_PATH)
p = "/proc/self/fd/%d" % fd
os.link(d + "/y", d + "/z")
open(d + "/y").read()
os.rename(d + "/x", d + "/y")
print(open(p).read(), open(d + "/y").read(), open(d + "/z").read(), os.stat(p).st_nlink, os.stat(d + "/z").st_nlink)
with open(p, "a") as f: f.write("+more")
print(open(p).read(), sorted(os.listdir(d)))
os.close(fd)
`;
      fs.writeFileSync(path.join(base, "replace.py"), script);
      const out = await shOk(`python3 ${path.join(base, "replace.py")} repl1`, mnt);
      expect(out.split("\n")).toEqual(["old new old 1 1", "old+more ['y', 'z']", ""]);
      expect(fs.readFileSync(path.join(hostDir, "repl1", "y"), "utf8")).toBe("new");
      expect(fs.readFileSync(path.join(hostDir, "repl1", "z"), "utf8")).toBe("old+more");
    });

    it("every name of a linked file shows one inode number (virtiofsd finds the file of a name by it), also after the first name goes", async () => {
      const out = await shOk("set -e; mkdir l7; cd l7; echo x > a; stat -c %i a; ln a b; ln b c; stat -c %i a b c; rm a; stat -c %i b c; echo y > solo; stat -c %i solo", mnt);
      const [first, a, b, c, b2, c2, solo] = out.split("\n").filter(Boolean);
      expect([a, b, c, b2, c2]).toEqual([first, first, first, first, first]);
      expect(solo).not.toBe(first);
    });

    // A file's number lives as long as the file: ext4 hands a freed host inode to the next new file at once, and
    // a number kept past its file (the link-group key derives from the host inode) made the new file show the
    // old file's number, which virtiofsd had forgotten, so a guest's `rm` of the new name failed with EIO. The
    // mount pushes no stats (statsPushMs 0), so pins go at the next hide, right before the next create, as in
    // the guest; each round reports whether the host reused the inode, and at least one round must have.
    it("a new file on a deleted linked file's host inode gets its own number, not the old file's", async () => {
      const dir = path.join(base, `${kind}-reuse`);
      const reuseMnt = path.join(dir, "mnt");
      const host = path.join(dir, kind === "root" ? "root" : "upper");
      fs.mkdirSync(reuseMnt, { recursive: true });
      fs.mkdirSync(host);
      if (kind === "layers") fs.mkdirSync(path.join(dir, "lower"));
      const source = kind === "root" ? { root: host } : { layers: { lower: path.join(dir, "lower"), upper: host } };
      const h = await mountPassthrough({ ...source, mountpoint: reuseMnt, statsPushMs: 0 });
      try {
        const rounds = [];
        for (let round = 0; round < 5; round++) {
          const out = await shOk(
            `set -e; mkdir r${round}; cd r${round}; echo x > a; ln a b; stat -c %i a; stat -c %i ${host}/r${round}/a
             rm a b; sleep 0.2; echo z > e; ln e f; rm e; echo y > c; ln c d; stat -c %i c d f; stat -c %i ${host}/r${round}/c`,
            reuseMnt,
          );
          const [old, oldHost, c, d, f, cHost] = out.split("\n").filter(Boolean);
          expect(c).toBe(d);
          expect([c, f]).not.toContain(old);
          rounds.push(cHost === oldHost);
        }
        expect(rounds, "the host never reused the deleted file's inode: the test did not try the case").toContain(true);
      } finally {
        await h.unmount();
      }
    });

    it("the hidden names are not the caller's: no create, rename onto, or unlink of /.iii-unlinked-*", async () => {
      const out = await shOk(
        "touch .iii-unlinked-7 2>&1; echo rc=$?; touch x7; mv x7 .iii-unlinked-7 2>&1; echo rc=$?; mkdir .iii-unlinked-8 2>&1; echo rc=$?; rm -f x7",
        mnt,
      );
      expect(out).toMatch(/Operation not permitted\nrc=1\n.*Operation not permitted\nrc=1\n.*Operation not permitted\nrc=1\n/s);
    });

    it("fallocate -l 1M allocates on the host file and sets the size", async () => {
      const out = await shOk("set -e; fallocate -l 1M fa; stat -c '%s %b %B' fa; fallocate -p -o 0 -l 65536 fa; stat -c %s fa", mnt);
      const [first, afterPunch] = out.split("\n");
      const [size, blocks, blockSize] = (first ?? "").split(" ").map(Number);
      expect(size).toBe(1 << 20);
      expect((blocks ?? 0) * (blockSize ?? 0)).toBeGreaterThanOrEqual(1 << 20);
      // Punching a hole keeps the size.
      expect(Number(afterPunch)).toBe(1 << 20);
      expect(fs.statSync(path.join(hostDir, "fa")).size).toBe(1 << 20);
    });
  });
});
