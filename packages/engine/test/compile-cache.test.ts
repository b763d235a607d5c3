import { spawnSync } from "node:child_process";
import { chmodSync, existsSync, mkdirSync, mkdtempSync, readFileSync, realpathSync, rmSync, statSync, writeFileSync } from "node:fs";
import { createRequire } from "node:module";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { afterAll, beforeAll, describe, expect, it } from "vitest";

const CLI = fileURLToPath(new URL("../dist/cli.js", import.meta.url));
const WORKER_DIR = realpathSync(join(createRequire(import.meta.url).resolve("@iii/worker/package.json"), ".."));
const WORKER_CLI = join(WORKER_DIR, "dist", "cli.js");
/** The attacker (an unprivileged local user planting a compile-cache entry for WORKER_CLI), shared with @iii/worker's test. */
const ATTACK = readFileSync(join(WORKER_DIR, "test", "fixtures", "compile-cache-attack.cjs"), "utf8");
const NOBODY = 65534;
const isRoot = process.geteuid?.() === 0;
let dir: string;

/** The environment without Node's and XDG's cache variables: each test says where the cache may go. */
function cleanEnv(extra: Record<string, string>): NodeJS.ProcessEnv {
  const env = Object.fromEntries(Object.entries(process.env).filter(([k]) => !/^(NODE_|XDG_|VITEST|TMPDIR$|HOME$)/.test(k)));
  return { ...env, ...extra };
}


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
});
