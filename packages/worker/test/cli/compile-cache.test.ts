import { spawnSync } from "node:child_process";
import { chmodSync, copyFileSync, existsSync, mkdirSync, mkdtempSync, readFileSync, realpathSync, rmSync, statSync } from "node:fs";
import { createRequire } from "node:module";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { compileCacheDir } from "../../src/host/compile-cache.js";

const CLI = fileURLToPath(new URL("../../dist/cli.js", import.meta.url));
const SUPERVISOR = fileURLToPath(new URL("../../dist/supervisor.js", import.meta.url));
const FUSE_SERVER = join(dirname(createRequire(import.meta.url).resolve("@iii/filesystem/package.json")), "dist", "server.js");
const ATTACK = fileURLToPath(new URL("../fixtures/compile-cache-attack.cjs", import.meta.url));
const NOBODY = 65534;
const isRoot = process.geteuid?.() === 0;
let dir: string;

/** The environment without Node's and XDG's cache variables: each test says where the cache may go. */
function cleanEnv(extra: Record<string, string>): NodeJS.ProcessEnv {
  const env = Object.fromEntries(Object.entries(process.env).filter(([k]) => !/^(NODE_|XDG_|VITEST|TMPDIR$|HOME$)/.test(k)));
  return { ...env, ...extra };
}

/** A sticky, world-writable TMPDIR and a private HOME for root, as on a real host. */
function hostDirs(name: string): { tmp: string; home: string } {
  const tmp = join(dir, name, "tmp");
  const home = join(dir, name, "home");
  mkdirSync(tmp, { recursive: true });
  chmodSync(tmp, 0o1777);
  mkdirSync(home, { mode: 0o700 });
  return { tmp, home };
}

beforeAll(() => {
  dir = mkdtempSync("/tmp/iii-worker-cc-");
  chmodSync(dir, 0o755);
});
afterAll(() => rmSync(dir, { recursive: true, force: true }));

describe("iii-worker's compile cache", () => {
  it.skipIf(!isRoot)("never loads code another local user planted in $TMPDIR/node-compile-cache", () => {
    const { tmp, home } = hostDirs("attack");
    const work = join(dir, "attacker");
    const marker = join(dir, "planted-code-ran");
    mkdirSync(work);
    chmodSync(work, 0o777);
    copyFileSync(ATTACK, join(work, "attack.cjs"));
    const attack = spawnSync("setpriv", [`--reuid=${NOBODY}`, `--regid=${NOBODY}`, "--clear-groups", process.execPath, join(work, "attack.cjs"), realpathSync(CLI), join(tmp, "node-compile-cache"), work, marker], {
      env: cleanEnv({ HOME: work, TMPDIR: work }),
      encoding: "utf8",
    });
    expect(attack.status, attack.stderr).toBe(0);
    expect(statSync(join(tmp, "node-compile-cache")).uid).toBe(NOBODY);

    const run = spawnSync(process.execPath, [CLI, "--version"], { env: cleanEnv({ HOME: home, TMPDIR: tmp }), encoding: "utf8" });
    expect(existsSync(marker) ? readFileSync(marker, "utf8") : "no planted code ran").toBe("no planted code ran");
    expect(run.stdout).toMatch(/\d+\.\d+\.\d+/);
    // The cache went to root's own, private directory instead.
    expect(statSync(join(home, ".cache", "iii", "node-compile-cache")).mode & 0o777).toBe(0o700);
  });

  it("the supervisor and the FUSE server never turn on a cache of their own (which would be $TMPDIR's)", () => {
    for (const [name, entry] of [["supervisor", SUPERVISOR], ["fuse-server", FUSE_SERVER]] as const) {
      const { tmp, home } = hostDirs(name);
      // Started without a parent's approved directory: no cache at all. (The supervisor prints its usage and exits;
      // the FUSE server, without an IPC channel, ends as well: both get past where the cache was turned on.)
      spawnSync(process.execPath, [entry], { env: cleanEnv({ HOME: home, TMPDIR: tmp }), encoding: "utf8", timeout: 10_000 });
      expect(existsSync(join(tmp, "node-compile-cache")), `${name} made $TMPDIR/node-compile-cache`).toBe(false);
    }
  });

  it("uses a private directory of this user's, and nothing someone else owns or can write", () => {
    const uid = process.geteuid!();
    const mine = join(dir, "mine");
    mkdirSync(mine, { mode: 0o700 });
    expect(compileCacheDir({ XDG_CACHE_HOME: mine }, uid)).toBe(join(realpathSync(mine), "iii", "node-compile-cache"));
    expect(statSync(join(mine, "iii", "node-compile-cache")).mode & 0o777).toBe(0o700);
    // A cache directory other users can write: refused (and left as it is).
    const shared = join(dir, "shared");
    mkdirSync(join(shared, "iii", "node-compile-cache"), { recursive: true });
    chmodSync(join(shared, "iii", "node-compile-cache"), 0o777);
    expect(compileCacheDir({ XDG_CACHE_HOME: shared }, uid)).toBeUndefined();
    // A parent other users can write without the sticky bit: they could swap the directory.
    const open = join(dir, "open");
    mkdirSync(open);
    chmodSync(open, 0o777);
    expect(compileCacheDir({ XDG_CACHE_HOME: open }, uid)).toBeUndefined();
    expect(existsSync(join(open, "iii"))).toBe(false);
    // Another user's tree (as `sudo` keeping that user's HOME looks to root): refused, nothing created there.
    if (uid === 0) {
      const theirs = join(dir, "theirs");
      mkdirSync(theirs, { mode: 0o755 });
      spawnSync("chown", [`${NOBODY}:${NOBODY}`, theirs]);
      expect(compileCacheDir({ XDG_CACHE_HOME: theirs }, 0)).toBeUndefined();
      expect(existsSync(join(theirs, "iii"))).toBe(false);
    }
    // The user's own NODE_COMPILE_CACHE (Node already honoured it) and NODE_DISABLE_COMPILE_CACHE are left alone.
    expect(compileCacheDir({ XDG_CACHE_HOME: mine, NODE_COMPILE_CACHE: "/x" }, uid)).toBeUndefined();
    expect(compileCacheDir({ XDG_CACHE_HOME: mine, NODE_DISABLE_COMPILE_CACHE: "1" }, uid)).toBeUndefined();
  });
});
