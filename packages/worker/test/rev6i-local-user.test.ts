import { spawn, type ChildProcess } from "node:child_process";
import { chmodSync, mkdirSync, mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { setTimeout as sleep } from "node:timers/promises";
import { afterAll, describe, expect, it } from "vitest";
import { findStartingSupervisor } from "../src/host/starting-supervisor.js";
import { managedDir } from "../src/paths.js";
import { runWorkerCli, WORKER_CLI } from "./helpers.js";

// Review rev6i: an unprivileged local user (uid 65534 through setpriv) against root's workers.
const root = process.geteuid?.() === 0;
const NOBODY = ["--reuid", "65534", "--regid", "65534", "--clear-groups"];

const dir = mkdtempSync(join(tmpdir(), "iii-rev6i-local-"));
chmodSync(dir, 0o755);
const children: ChildProcess[] = [];
afterAll(() => {
  for (const child of children) child.kill("SIGKILL");
  rmSync(dir, { recursive: true, force: true });
});

describe.skipIf(!root)("another user's look-alike of a starting supervisor (rev6i)", () => {
  it("is not taken for root's starting worker: root's exec of a stopped worker fails at once, not after a minute", async () => {
    const project = join(dir, "project");
    const rootfs = join(dir, "rootfs");
    mkdirSync(project, { recursive: true });
    mkdirSync(rootfs, { recursive: true });
    const home = join(dir, "home");
    const env = { III_HOME: home };
    const added = await runWorkerCli(["add", `dir:${rootfs}`, "--name", "w", "--", "true"], { cwd: project, env });
    expect(added.code, added.stderr).toBe(0);

    // `<interpreter> /…/supervisor.js w <project>` with root's III_HOME in its environment, as a standby supervisor
    // of root's has. It makes itself non-dumpable (any process may), so /proc/<pid> shows root as its owner.
    const fake = join(dir, "fake");
    mkdirSync(fake, { mode: 0o755 });
    writeFileSync(join(fake, "supervisor.js"), "import ctypes, time\nctypes.CDLL(None).prctl(4, 0, 0, 0, 0)\ntime.sleep(600)\n", { mode: 0o644 });
    const lookAlike = spawn("setpriv", [...NOBODY, "/usr/bin/python3", join(fake, "supervisor.js"), "w", project], {
      env: { PATH: process.env.PATH, III_HOME: home },
      cwd: dir,
      stdio: "ignore",
    });
    children.push(lookAlike);
    // Wait until it runs as the command line that matches (setpriv has exec'd python) and has made itself
    // non-dumpable (on Linux /proc/<pid> then shows root as its owner; not under every kernel: gVisor keeps it).
    const deadline = Date.now() + 10_000;
    for (;;) {
      const cmdline = (() => {
        try {
          return readFileSync(`/proc/${lookAlike.pid}/cmdline`, "utf8");
        } catch {
          return "";
        }
      })();
      if (cmdline.includes("supervisor.js") && /^Uid:\s+65534\b/m.test(readFileSync(`/proc/${lookAlike.pid}/status`, "utf8"))) break;
      if (Date.now() > deadline) throw new Error(`the look-alike never started: ${JSON.stringify(cmdline)}`);
      await sleep(20);
    }

    await sleep(300); // its prctl
    expect(findStartingSupervisor("w", managedDir("w", env, project))).toBeUndefined();
    const t0 = Date.now();
    const exec = await runWorkerCli(["exec", "w", "--", "true"], { cwd: project, env });
    const elapsed = Date.now() - t0;
    expect(exec.stderr).toMatch(/is not running.*\[VmNotRunning\]/);
    expect(exec.code).not.toBe(0);
    expect(elapsed).toBeLessThan(20_000);
    lookAlike.kill("SIGKILL");
  }, 120_000);
});

describe("iii.workers.yaml made by add (rev6i)", () => {
  it("a new file follows the umask (it holds --env values): 0600 under umask 077, not 0644", async () => {
    const project = join(dir, "umask");
    mkdirSync(project, { recursive: true });
    const env = { ...process.env, III_HOME: join(dir, "home-umask") };
    const code = await new Promise<number | null>((resolve) => {
      const child = spawn("sh", ["-c", 'umask 077; exec "$0" "$@"', process.execPath, WORKER_CLI, "add", "ghcr.io/acme/api:1", "--no-pull", "-e", "API_TOKEN=s3cret"], {
        cwd: project,
        env,
        stdio: "ignore",
      });
      child.on("close", resolve);
    });
    expect(code).toBe(0);
    const path = join(project, "iii.workers.yaml");
    expect(readFileSync(path, "utf8")).toContain("s3cret");
    expect(statSync(path).mode & 0o777).toBe(0o600);
    // An existing file keeps its mode (the user's chmod holds), whatever the umask of a later add.
    chmodSync(path, 0o640);
    const again = await runWorkerCli(["add", "ghcr.io/acme/web:1", "--no-pull"], { cwd: project, env: { III_HOME: env.III_HOME } });
    expect(again.code, again.stderr).toBe(0);
    expect(statSync(path).mode & 0o777).toBe(0o640);
  }, 60_000);
});
