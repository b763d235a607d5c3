import { spawn, spawnSync } from "node:child_process";
import { chmodSync, mkdirSync, mkdtempSync, rmSync, statSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { setTimeout as sleep } from "node:timers/promises";
import { afterAll, describe, expect, it } from "vitest";
import { runWorkerCli } from "./helpers.js";

// Review rev6i: flock(2) needs no write access. `iii.workers.yaml.lock` sits in the project directory, and it was
// 0644: any local user (uid 65534 here) opened it read-only and held LOCK_EX, and root's every `add` and `remove` of
// the project timed out after 30 s (StateLockTimeout), for as long as they liked.
const root = process.geteuid?.() === 0;
const NOBODY = ["--reuid", "65534", "--regid", "65534", "--clear-groups"];

const dir = mkdtempSync(join(tmpdir(), "iii-rev6i-lock-"));
chmodSync(dir, 0o755);
afterAll(() => rmSync(dir, { recursive: true, force: true }));

describe.skipIf(!root)("the project's lock file against another local user (rev6i)", () => {
  it("is 0600, so another user cannot open it to hold it; an older 0644 one is made 0600 at the next use", async () => {
    const project = join(dir, "project");
    mkdirSync(project, { mode: 0o755 });
    const env = { III_HOME: join(dir, "home") };
    const lock = join(project, "iii.workers.yaml.lock");
    expect((await runWorkerCli(["add", "ghcr.io/acme/a:1", "--no-pull"], { cwd: project, env })).code).toBe(0);
    // As a lock file made by an earlier version (or by a umask that let others read it).
    chmodSync(lock, 0o644);
    expect((await runWorkerCli(["add", "ghcr.io/acme/b:1", "--no-pull"], { cwd: project, env })).code).toBe(0);
    expect(statSync(lock).mode & 0o777).toBe(0o600);

    // The attack: hold the lock as uid 65534 for a minute, then add and remove as root.
    const holder = spawn("setpriv", [...NOBODY, "flock", "-x", lock, "sleep", "60"], { stdio: "ignore" });
    const held = new Promise<number | null>((resolve) => holder.on("close", resolve));
    try {
      await sleep(500);
      const t0 = Date.now();
      const added = await runWorkerCli(["add", "ghcr.io/acme/c:1", "--no-pull"], { cwd: project, env });
      const removed = await runWorkerCli(["remove", "a"], { cwd: project, env });
      expect({ add: added.code, remove: removed.code, stderr: added.stderr + removed.stderr }).toMatchObject({ add: 0, remove: 0 });
      expect(Date.now() - t0).toBeLessThan(20_000);
      // It could not even open the file (flock(1) exits 66, EX_NOINPUT).
      expect(await Promise.race([held, sleep(5_000).then(() => "still holding")])).toBe(66);
    } finally {
      holder.kill("SIGKILL");
    }
    expect(spawnSync("setpriv", [...NOBODY, "flock", "-n", "-x", lock, "true"]).status).not.toBe(0);
  }, 120_000);
});
