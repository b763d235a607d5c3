import fs from "node:fs";
import path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { mountPassthrough, type MountHandle } from "../src/index.js";
import { fuse, rmrf, shOk, tempDir } from "./helpers.js";

const N = 10_000;

describe.skipIf(!fuse.ok)("readdir: stable offsets", () => {
  let base: string;
  let handle: MountHandle | undefined;
  let root: string;
  let mnt: string;

  beforeAll(async () => {
    base = tempDir("readdir");
    root = path.join(base, "root");
    mnt = path.join(base, "mnt");
    fs.mkdirSync(path.join(root, "big"), { recursive: true });
    fs.mkdirSync(path.join(root, "churn"), { recursive: true });
    fs.mkdirSync(mnt);
    for (let i = 0; i < N; i++) fs.writeFileSync(path.join(root, "big", `entry-${i}`), "");
    for (let i = 0; i < N; i++) fs.writeFileSync(path.join(root, "churn", `f${i}`), "");
    handle = await mountPassthrough({ root, mountpoint: mnt, virtualFiles: { "/init.krun": { content: "x" } } });
  });

  afterAll(async () => {
    await handle?.unmount();
    if (base) rmrf(base);
  });

  it("ls -la of 10,000 entries lists each exactly once", async () => {
    const out = await shOk("ls -la big | tail -n +2 | awk '{print $NF}'", mnt);
    const names = out.split("\n").filter(Boolean);
    expect(names.length).toBe(N + 2);
    expect(new Set(names).size).toBe(N + 2);
    for (let i = 0; i < N; i++) expect(names.includes(`entry-${i}`) || i < 0).toBe(true);
    const find = await shOk("find big -mindepth 1 | wc -l", mnt);
    expect(Number(find.trim())).toBe(N);
  });

  it("repeated listings do not grow the server's memory (no buffer kept per readdir)", async () => {
    // JS heap and Buffers after a full GC in the server: what a kept listing would grow,
    // independent of GC timing and of other load (RSS was: 65 MB once under a parallel FUSE workload).
    const used = async (): Promise<number> => {
      const m = await (handle as MountHandle).memoryAfterGc();
      return m.heapUsed + m.external;
    };
    await shOk("for i in 1 2 3 4 5; do ls -f big > /dev/null; done", mnt);
    const before = await used();
    await shOk("for i in $(seq 1 40); do ls -f big > /dev/null; done", mnt);
    const after = await used();
    // 40 listings of 10,000 names (~150 KB of names each): one kept per call would be 6 MB and more.
    expect(after - before).toBeLessThan(2 * 1024 * 1024);
  });

  it("the same through a layered mount, whose listings the JS side makes (the shim lists plain trees itself)", async () => {
    const upper = path.join(base, "upper");
    const mnt2 = path.join(base, "mnt2");
    fs.mkdirSync(upper);
    fs.mkdirSync(mnt2);
    const layered = await mountPassthrough({ layers: { lower: root, upper }, mountpoint: mnt2 });
    try {
      const used = async (): Promise<number> => {
        const m = await layered.memoryAfterGc();
        return m.heapUsed + m.external;
      };
      const listed = async (): Promise<number> => {
        await new Promise((r) => setTimeout(r, 400));
        const s = layered.stats();
        return (s.ops.readdir ?? 0) - (s.shimOps?.readdir ?? 0);
      };
      await shOk("for i in 1 2 3 4 5; do ls -f big > /dev/null; done", mnt2);
      const before = await used();
      const jsBefore = await listed();
      await shOk("for i in $(seq 1 40); do ls -f big > /dev/null; done", mnt2);
      const after = await used();
      expect((await listed()) - jsBefore).toBeGreaterThanOrEqual(40);
      expect(after - before).toBeLessThan(2 * 1024 * 1024);
    } finally {
      await layered.unmount();
    }
  });

  it("ls / lists the injected init once, at a real offset", async () => {
    for (let round = 0; round < 3; round++) {
      const names = (await shOk("ls -a1", mnt)).split("\n").filter(Boolean);
      expect(names.filter((n) => n === "init.krun")).toHaveLength(1);
      expect(names.sort()).toEqual([".", "..", "big", "churn", "init.krun"]);
    }
  });

  it("a listing interleaved with creates and deletes never loops or repeats", async () => {
    const script = String.raw`
import os, sys, json, random
d = sys.argv[1]
random.seed(4)
seen = {}
deleted = set()
created = 0
n = 0
for e in os.scandir(d):
    seen[e.name] = seen.get(e.name, 0) + 1
    n += 1
    if n > 200000:
        print(json.dumps({"loop": True})); sys.exit(0)
    if n % 20 == 0:
        for _ in range(3):
            open(os.path.join(d, "new-%d-%d" % (n, _)), "w").close(); created += 1
        victim = "f%d" % random.randrange(${N})
        try:
            os.unlink(os.path.join(d, victim)); deleted.add(victim)
        except FileNotFoundError:
            pass
dups = [k for k, v in seen.items() if v > 1]
missing = [("f%d" % i) for i in range(${N}) if ("f%d" % i) not in seen and ("f%d" % i) not in deleted]
print(json.dumps({"loop": False, "n": n, "dups": dups[:10], "missing": missing[:10], "created": created, "deleted": len(deleted)}))
`;
    fs.writeFileSync(path.join(base, "churn.py"), script);
    const out = JSON.parse(await shOk(`python3 ${path.join(base, "churn.py")} churn`, mnt)) as {
      loop: boolean;
      n: number;
      dups: string[];
      missing: string[];
      created: number;
      deleted: number;
    };
    expect(out.loop).toBe(false);
    expect(out.dups).toEqual([]);
    expect(out.missing).toEqual([]);
    expect(out.created).toBeGreaterThan(1000);
    expect(out.deleted).toBeGreaterThan(100);
    expect(out.n).toBeLessThanOrEqual(N);
    // The directory afterwards reflects every change exactly.
    const after = (await shOk("ls -1 churn | wc -l", mnt)).trim();
    expect(Number(after)).toBe(fs.readdirSync(path.join(root, "churn")).length);
  });
});
