// The shim answers reads, writes and, for a plain tree, getattr/open/chmod/chown/utimens/flush/release on
// libfuse's threads (setattr-shim.c, eighth and ninth jobs): the JS thread sees only what needs it. The
// answers are the JS side's (the conformance, host-privilege and escape tests run through these paths too);
// this file checks that the hand-offs are really gone, and what still goes to the JS side.
import fs from "node:fs";
import path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { mountPassthrough, setattrShimPath, type MountHandle, type MountStats } from "../src/index.js";
import { fuse, rmrf, shOk, tempDir } from "./helpers.js";

async function settled(h: MountHandle): Promise<MountStats> {
  await new Promise((r) => setTimeout(r, 400)); // stats are a snapshot at most 250 ms old
  return h.stats();
}

/** Requests of `op` the JS thread answered between two snapshots. */
function viaJs(before: MountStats, after: MountStats, op: string): number {
  const js = (s: MountStats): number => (s.ops[op] ?? 0) - (s.shimOps?.[op] ?? 0);
  return js(after) - js(before);
}

function viaShim(before: MountStats, after: MountStats, op: string): number {
  return (after.shimOps?.[op] ?? 0) - (before.shimOps?.[op] ?? 0);
}

describe.skipIf(!fuse.ok)("requests the shim answers on libfuse's thread", () => {
  let base: string;
  let root: string;
  let h: MountHandle;
  let layered: MountHandle;

  beforeAll(async () => {
    expect(setattrShimPath()).not.toBeNull();
    base = tempDir("fast");
    root = path.join(base, "root");
    fs.mkdirSync(root);
    for (const d of ["m", "lower", "upper", "ml"]) fs.mkdirSync(path.join(base, d), { recursive: true });
    fs.writeFileSync(path.join(base, "init"), "INIT\n");
    h = await mountPassthrough({ root, mountpoint: path.join(base, "m"), virtualFiles: { "/init.krun": { hostPath: path.join(base, "init") } } });
    layered = await mountPassthrough({ layers: { lower: path.join(base, "lower"), upper: path.join(base, "upper") }, mountpoint: path.join(base, "ml") });
  });
  afterAll(async () => {
    await h?.unmount();
    await layered?.unmount();
    if (base) rmrf(base);
  });

  it("stat and cat of 300 files through a plain tree: no getattr, open, read, flush or release reaches the JS thread", async () => {
    fs.mkdirSync(path.join(root, "t"));
    for (let i = 0; i < 300; i++) fs.writeFileSync(path.join(root, "t", `f${i}`), `file ${i}\n`);
    const before = await settled(h);
    const out = await shOk("stat -c '%s %a' t/f* | sort | uniq -c | wc -l && cat t/f* | wc -l && ls -f t | wc -l", path.join(base, "m"));
    const after = await settled(h);
    expect(out.trim().split("\n").map(Number).slice(1)).toEqual([300, 302]);
    for (const op of ["getattr", "readdir", "open", "read", "flush", "release"]) expect([op, viaJs(before, after, op)]).toEqual([op, 0]);
    expect(viaShim(before, after, "getattr")).toBeGreaterThanOrEqual(300);
    expect(viaShim(before, after, "open")).toBeGreaterThanOrEqual(300);
    expect(after.bytesRead - before.bytesRead).toBeGreaterThanOrEqual(300 * 7);
  });

  it("tar x as root: nothing goes to the JS thread; times, modes and owners as archived", async () => {
    const src = path.join(base, "src");
    fs.mkdirSync(path.join(src, "x"), { recursive: true });
    for (let i = 0; i < 100; i++) fs.writeFileSync(path.join(src, "x", `f${i}`), `data ${i}\n`, { mode: 0o640 });
    fs.utimesSync(path.join(src, "x", "f7"), new Date("2001-02-03T04:05:06Z"), new Date("2001-02-03T04:05:06Z"));
    await shOk(`tar cf ${base}/x.tar -C ${src} x`, base);
    const before = await settled(h);
    await shOk(`tar xf ${base}/x.tar`, path.join(base, "m"));
    const after = await settled(h);
    expect(viaShim(before, after, "create")).toBe(100);
    for (const op of ["create", "mkdir", "getattr", "write", "utimens", "chown", "chmod", "flush", "release"]) expect([op, viaJs(before, after, op)]).toEqual([op, 0]);
    expect(await shOk("stat -c '%a %u %g %Y' x/f7", path.join(base, "m"))).toBe(`640 0 0 ${Date.parse("2001-02-03T04:05:06Z") / 1000}\n`);
    expect(fs.readFileSync(path.join(root, "x", "f99"), "utf8")).toBe("data 99\n");
  });

  it("a directory renamed or removed and made again through the mount: no lookup answers from the old one", async () => {
    const m = path.join(base, "m");
    // Each libfuse thread keeps the parent it resolved last; rename and rmdir through the mount make it stale.
    await shOk("mkdir -p r/a && echo old > r/a/x && stat r/a/x >/dev/null && mv r/a r/b && mkdir r/a && echo new > r/a/y", m);
    expect(await shOk("cat r/b/x; ls r/a; test -e r/a/x || echo gone", m)).toBe("old\ny\ngone\n");
    await shOk("rm -r r/a && mkdir r/a && echo again > r/a/z", m);
    expect(await shOk("ls r/a; test -e r/a/y || echo gone", m)).toBe("z\ngone\n");
    const loop = "for i in $(seq 1 30); do mkdir d && echo $i > d/f && stat d/f >/dev/null && mv d d$i && mkdir d && { test -e d/f && echo stale$i; }; rmdir d; done; echo done";
    expect(await shOk(loop, path.join(m, "r"))).toBe("done\n");
  });

  it("no FLUSH per close: the shim's ENOSYS stops them for the connection, plain and layered trees alike", async () => {
    // `echo x > f` closes the file twice (bash's dup2 of the redirection): two FLUSHes per file before.
    for (const [handle, dir] of [
      [h, path.join(base, "m")],
      [layered, path.join(base, "ml")],
    ] as const) {
      await shOk("echo warm > warm && cat warm >/dev/null", dir);
      const before = await settled(handle);
      await shOk("mkdir -p fl && for i in $(seq 1 50); do echo $i > fl/f$i; done && cat fl/f* >/dev/null", dir);
      const after = await settled(handle);
      expect((after.ops.flush ?? 0) - (before.ops.flush ?? 0)).toBe(0);
      expect(await shOk("cat fl/f50", dir)).toBe("50\n");
    }
  });

  it("what the JS side keeps: virtual files, setuid bits, a hard-linked file, and every request of a layered tree", async () => {
    const m = path.join(base, "m");
    await shOk("echo a > s && echo b > l1 && ln l1 l2", m);
    const before = await settled(h);
    await shOk("cat init.krun >/dev/null && chmod 4755 s && chmod 600 l1 && stat l2 >/dev/null", m);
    const after = await settled(h);
    expect(viaJs(before, after, "open")).toBe(1); // init.krun
    expect(viaJs(before, after, "chmod")).toBe(2); // setuid, and a linked file (its other names refresh)
    expect(viaJs(before, after, "getattr")).toBeGreaterThan(0);
    expect(await shOk("stat -c '%a' s l2", m)).toBe("4755\n600\n");
    // The root lists the virtual files the JS side merges in; a FIFO made through the mount lists as one.
    const rb = await settled(h);
    await shOk("mkdir -p p && mkfifo p/fifo && ls -f / >/dev/null && ls -f . >/dev/null", m);
    expect(await shOk("find p -type p", m)).toBe("p/fifo\n");
    const ra = await settled(h);
    expect(viaJs(rb, ra, "readdir")).toBe(1);
    expect(await shOk("ls -a | grep -c init.krun", m)).toBe("1\n");

    const lb = await settled(layered);
    await shOk("echo x > f && cat f && stat f >/dev/null", path.join(base, "ml"));
    const la = await settled(layered);
    expect(viaShim(lb, la, "getattr") + viaShim(lb, la, "open")).toBe(0);
    expect(viaJs(lb, la, "getattr")).toBeGreaterThan(0);
  });
});
