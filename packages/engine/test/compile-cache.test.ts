import { spawnSync } from "node:child_process";
import { chmodSync, existsSync, mkdirSync, mkdtempSync, rmSync, statSync } from "node:fs";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { afterAll, beforeAll, describe, expect, it } from "vitest";

const CLI = fileURLToPath(new URL("../dist/cli.js", import.meta.url));
let dir: string;

beforeAll(() => {
  dir = mkdtempSync("/tmp/iii-engine-cc-");
});
afterAll(() => rmSync(dir, { recursive: true, force: true }));

// The attack itself (another local user plants a V8 code cache entry in $TMPDIR/node-compile-cache and root's
// `iii-worker` runs it) is @iii/worker's test/cli/compile-cache.test.ts; here: the shim, which loads iii-worker in
// its own process, adds no cache of its own, and what it runs keeps the cache in the user's private directory.
describe("the shim's compile cache", () => {
  it("is never $TMPDIR/node-compile-cache: iii-worker's private one, or none", () => {
    const tmp = join(dir, "tmp");
    const home = join(dir, "home");
    mkdirSync(tmp, { mode: 0o1777 });
    chmodSync(tmp, 0o1777);
    mkdirSync(home, { mode: 0o700 });
    const env = Object.fromEntries(Object.entries(process.env).filter(([k]) => !/^(NODE_|XDG_|VITEST|TMPDIR$|HOME$)/.test(k)));
    const run = spawnSync(process.execPath, [CLI, "worker", "--version"], { env: { ...env, HOME: home, TMPDIR: tmp }, encoding: "utf8" });
    expect(run.stdout).toMatch(/\d+\.\d+\.\d+/);
    expect(existsSync(join(tmp, "node-compile-cache"))).toBe(false);
    expect(statSync(join(home, ".cache", "iii", "node-compile-cache")).mode & 0o777).toBe(0o700);
  });
});
