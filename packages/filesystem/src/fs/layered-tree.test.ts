// The layered tree's directory-state cache against a guest that makes many directories (review s15): bounded, and
// a mkdir costs the same after thousands of directories as after none. Directly on the tree, no mount.
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { afterEach, describe, expect, it } from "vitest";
import { LayeredTree, MAX_DIR_STATES } from "./layered-tree.js";

describe("LayeredTree directory states", () => {
  let base: string | undefined;

  afterEach(() => {
    if (base) fs.rmSync(base, { recursive: true, force: true });
    base = undefined;
  });

  function tree(): LayeredTree {
    base = fs.mkdtempSync(path.join(os.tmpdir(), `iii-fs-dirstates-${process.pid}-`));
    for (const d of ["lower", "upper"]) fs.mkdirSync(path.join(base, d));
    fs.mkdirSync(path.join(base, "lower", "img", "sub"), { recursive: true });
    return new LayeredTree(path.join(base, "lower"), path.join(base, "upper"));
  }

  const lookInto = (t: LayeredTree, dir: string): void => {
    try {
      t.getattr(`${dir}/x`);
    } catch {
      // ENOENT: the lookup cached `dir`'s state, which is the point
    }
  };

  it("keeps at most MAX_DIR_STATES, and mkdirs under a deep parent do not slow down as directories pile up", () => {
    const t = tree();
    try {
      // A deep parent: every cached path is ~3.8 KB, as a guest can make them.
      let parent = "";
      for (let i = 0; i < 15; i++) {
        parent += `/${"p".repeat(250)}`;
        t.mkdir(parent, 0o755);
      }
      const total = MAX_DIR_STATES + 2000;
      const quarter = total / 4;
      const times: number[] = [];
      let start = performance.now();
      for (let i = 0; i < total; i++) {
        t.mkdir(`${parent}/d${i}`, 0o755);
        lookInto(t, `${parent}/d${i}`);
        if ((i + 1) % quarter === 0) {
          times.push(performance.now() - start);
          start = performance.now();
        }
      }
      expect(t.cachedDirStates).toBeLessThanOrEqual(MAX_DIR_STATES);
      // Before: every mkdir scanned every cached path (the last quarter took ~8x the first); now a few lookups each.
      expect(times[3]).toBeLessThan(3 * (times[0] as number) + 200);
    } finally {
      t.close();
    }
  });

  it("forgets a renamed or removed directory's cached subtree, evicted parents included", () => {
    const t = tree();
    try {
      t.mkdir("/a", 0o755);
      t.mkdir("/a/b", 0o755);
      t.mkdir("/a/b/c", 0o755);
      lookInto(t, "/a/b/c");
      t.rename("/a", "/z");
      expect(() => t.getattr("/a/b/c")).toThrow();
      expect(t.getattr("/z/b/c").mode & 0o170000).toBe(0o040000);
      // A lower directory's state, then its copy-up and removal.
      lookInto(t, "/img/sub");
      t.rmdir("/img/sub");
      expect(() => t.getattr("/img/sub")).toThrow();
      t.mkdir("/img/sub", 0o700);
      expect(t.readdir("/img/sub")).toEqual([]);
      // Fill the cache past its bound so /z is evicted while /z/b/c stays, then rename /z: nothing stale under /z.
      lookInto(t, "/z/b/c");
      for (let i = 0; i < MAX_DIR_STATES; i++) lookInto(t, "/z/b/c");
      for (let i = 0; i < MAX_DIR_STATES - 10; i++) {
        t.mkdir(`/f${i}`, 0o755);
        lookInto(t, `/f${i}`);
      }
      lookInto(t, "/z/b/c");
      t.rename("/z", "/y");
      expect(() => t.getattr("/z/b/c")).toThrow();
      expect(t.getattr("/y/b/c").mode & 0o170000).toBe(0o040000);
    } finally {
      t.close();
    }
  });

  it("tells a non-empty directory from an empty one at its first visible name (a failing rmdir listed it all)", () => {
    const t = tree();
    try {
      const upper = path.join(base as string, "upper");
      const lower = path.join(base as string, "lower");
      fs.mkdirSync(path.join(upper, "full"));
      for (let i = 0; i < 20_000; i++) fs.writeFileSync(path.join(upper, "full", `f${i}`), "");
      let start = performance.now();
      expect(t.readdir("/full")).toHaveLength(20_000);
      const listing = performance.now() - start;
      start = performance.now();
      for (let i = 0; i < 20; i++) expect(() => t.rmdir("/full")).toThrow(expect.objectContaining({ errno: -39 /* ENOTEMPTY */ }));
      // Before: each failing rmdir was a full listing with an override read per file (20 of them: ~20x one listing).
      expect(performance.now() - start).toBeLessThan(listing);
      // Emptiness through the layers: lower entries count until whited out, markers never.
      fs.mkdirSync(path.join(lower, "img", "sub", "inner"));
      fs.writeFileSync(path.join(lower, "img", "sub", "file"), "x");
      t.mkdir("/full2", 0o755);
      expect(() => t.rename("/full2", "/img/sub")).toThrow(expect.objectContaining({ errno: -39 }));
      t.unlink("/img/sub/file");
      expect(() => t.rmdir("/img/sub")).toThrow(expect.objectContaining({ errno: -39 }));
      t.rmdir("/img/sub/inner");
      t.rename("/full2", "/img/sub");
      t.rmdir("/img/sub");
      expect(t.readdir("/img")).toEqual([]);
    } finally {
      t.close();
    }
  });
});
