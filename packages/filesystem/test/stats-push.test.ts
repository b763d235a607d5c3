import fs from "node:fs";
import path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { mountPassthrough, type MountHandle, type MountStats } from "../src/index.js";
import { fuse, rmrf, shOk, tempDir } from "./helpers.js";

const total = (s: MountStats): number => Object.values(s.ops).reduce((a, n) => a + n, 0);

// A worker never reads its mount's counters, so its FUSE server must not wake four times a second to send them
// (the idle-CPU budget per VM, issue 13): statsPushMs 0 turns the push timer off, and the counts still arrive once,
// at unmount.
describe.skipIf(!fuse.ok)("stats push from a child FUSE server", () => {
  let base: string;
  beforeAll(() => {
    base = tempDir("stats-push");
    for (const d of ["rootQ", "mntQ", "rootP", "mntP"]) fs.mkdirSync(path.join(base, d));
  });
  afterAll(() => rmrf(base));

  it("statsPushMs 0 sends no counters until unmount; the default pushes them within 250 ms", async () => {
    const quiet: MountHandle = await mountPassthrough({ root: path.join(base, "rootQ"), mountpoint: path.join(base, "mntQ"), isolation: "process", statsPushMs: 0 });
    const pushed: MountHandle = await mountPassthrough({ root: path.join(base, "rootP"), mountpoint: path.join(base, "mntP"), isolation: "process" });
    try {
      for (const m of [quiet, pushed]) await shOk("for i in 1 2 3; do echo $i > f$i; cat f$i; done; ls -l > /dev/null", m.mountpoint);
      await new Promise((r) => setTimeout(r, 800));
      expect(total(pushed.stats())).toBeGreaterThan(0);
      expect(total(quiet.stats())).toBe(0);
    } finally {
      await pushed.unmount();
      await quiet.unmount();
    }
    expect(total(quiet.stats())).toBeGreaterThan(0);
  });
});
