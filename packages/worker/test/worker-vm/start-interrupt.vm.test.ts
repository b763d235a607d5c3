import { spawn, spawnSync } from "node:child_process";
import { mkdirSync } from "node:fs";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { WORKER_CLI } from "../helpers.js";
import { busyboxRootfs, mountsUnder, processesMentioning, Project, vmSkipReason, waitFor } from "./harness.js";

const skip = vmSkipReason();
if (skip) console.warn(`[vm] skipping the interrupted-start VM tests: ${skip}`);

const netns = () => spawnSync("ip", ["netns", "list"], { encoding: "utf8" }).stdout;

/** Right after the CLI's exit, with nothing waited for: none of `names` has a process, mount or netns left, and each is listed stopped. */
async function expectNothingLeft(p: Project, names: string[], netnsBefore: string): Promise<void> {
  for (const name of names) expect(processesMentioning(p.managed(name)), p.diagnostics(name)).toEqual([]);
  expect(mountsUnder(p.home)).toEqual([]);
  expect(netns()).toBe(netnsBefore);
  const list = JSON.parse((await p.cli(["list", "--json"])).stdout) as { name: string; status: string }[];
  for (const name of names) expect(list.find((w) => w.name === name)?.status, name).toBe("stopped");
}

interface Interrupted {
  code: number | null;
  stderr: string;
  /** ms from the CLI's spawn to its exit. */
  exitedAtMs: number;
}

/**
 * What this run's supervisor log says (the part after `from`): when the stop reached the supervisor and when init
 * reported READY, as wall-clock ms (undefined when that never happened).
 */
function stopAndReady(log: string): { stopAt?: number; readyAt?: number } {
  const at = (re: RegExp) => {
    const m = re.exec(log);
    return m ? Date.parse(m[1]!) : undefined;
  };
  const stopAt = at(/^(\S+) .*: stopping( while booting|\s\(grace)/m);
  const readyAt = at(/^(\S+) ready in \d+ ms$/m);
  return { ...(stopAt !== undefined ? { stopAt } : {}), ...(readyAt !== undefined ? { readyAt } : {}) };
}

/**
 * `iii worker start NAME` as from a terminal (its own process group, the signal sent to the group, as Ctrl-C is),
 * signalled at each of `atMs` (ms after the spawn).
 */
function startAndSignal(p: Project, name: string, signal: NodeJS.Signals, atMs: number[], command: string[] = ["start", name]): Promise<Interrupted> {
  return new Promise((resolve, reject) => {
    const spawned = Date.now();
    const child = spawn(process.execPath, [WORKER_CLI, ...command], { cwd: p.dir, env: { ...process.env, ...p.env }, stdio: ["ignore", "ignore", "pipe"], detached: true });
    let stderr = "";
    child.stderr!.on("data", (d) => (stderr += d));
    const timers = atMs.map((ms) =>
      setTimeout(() => {
        try {
          process.kill(-child.pid!, signal);
        } catch {
          // already gone
        }
      }, ms),
    );
    child.on("error", reject);
    child.on("close", (code) => {
      timers.forEach(clearTimeout);
      resolve({ code, stderr, exitedAtMs: Date.now() - spawned });
    });
  });
}

describe.skipIf(!!skip)("Ctrl-C / SIGTERM on start while the VM boots (vm)", () => {
  let rootfs: string;
  const p = new Project();
  beforeAll(() => {
    rootfs = busyboxRootfs();
  }, 300_000);
  afterAll(() => p.dispose());

  const cases: [string, NodeJS.Signals, number[]][] = [
    ["SIGINT at 0.5 s", "SIGINT", [500]],
    ["SIGINT at 2 s", "SIGINT", [2_000]],
    ["SIGTERM at 1 s", "SIGTERM", [1_000]],
    ["SIGINT at 0.8 s and again at 1.1 s", "SIGINT", [800, 1_100]],
  ];
  for (const [what, signal, atMs] of cases) {
    it(`${what}: the start is cancelled, one line, exit 130, nothing of the worker left`, async () => {
      const name = `int-${signal.toLowerCase()}-${atMs.join("-")}`;
      const shares = [1, 2, 3].map((i) => join(p.dir, `${name}-s${i}`));
      for (const s of shares) mkdirSync(s);
      // A quarter of a CPU: the boot takes ~4 s here instead of ~1.3, so that 2 s falls inside it (unlimited, a start
      // signalled at 2 s had already printed `started`).
      const add = await p.cli(["add", `dir:${rootfs}`, "--name", name, "--cpus", "250m", ...shares.flatMap((s, i) => ["-m", `${s}:/s${i}`]), "--", "sh", "-c", "echo up; exec sleep 1000"]);
      expect(add.code, add.stderr).toBe(0);
      // a first start creates the worker's directory, so the next one uses its standby supervisor as a user's would
      expect((await p.cli(["start", name])).code).toBe(0);
      expect((await p.cli(["stop", name])).code).toBe(0);
      const netnsBefore = netns();
      const logFrom = p.read(`managed/${name}/logs/supervisor.log`).length;
      const upsBefore = p.read(`managed/${name}/logs/stdout.log`).split("up").length;
      const run = await startAndSignal(p, name, signal, atMs);
      console.log(`[vm] ${what}: CLI exited ${run.code} after ${run.exitedAtMs} ms: ${JSON.stringify(run.stderr)}`);
      expect(run.code, run.stderr).toBe(130);
      const lines = run.stderr.trim().split("\n");
      expect(lines.at(-1)).toMatch(new RegExp(`^iii-worker: start of ${name} interrupted(; the worker was stopped| before its VM was started; nothing is running) \\[Interrupted\\]$`));
      expect(run.stderr).not.toContain(`started ${name}`);
      // A stop that reaches a booting supervisor ends the VM there: the boot does not go on to READY and a workload
      // that is then shut down at once (init reads SHUTDOWN only after READY: seconds more under TCG).
      const { stopAt, readyAt } = stopAndReady(p.read(`managed/${name}/logs/supervisor.log`).slice(logFrom));
      if (stopAt !== undefined && (readyAt === undefined || stopAt < readyAt)) {
        expect(readyAt, p.diagnostics(name)).toBeUndefined();
        expect(p.read(`managed/${name}/logs/stdout.log`).split("up").length, "the workload ran").toBe(upsBefore);
      }
      // the CLI returned only once the worker was down
      await expectNothingLeft(p, [name], netnsBefore);
      // and it starts again as usual
      const again = await p.cli(["start", name]);
      expect(again.code, again.stderr).toBe(0);
      expect((await p.cli(["stop", name])).code).toBe(0);
    }, 120_000);
  }
});

describe.skipIf(!!skip)("Ctrl-C on restart (vm)", () => {
  let rootfs: string;
  const p = new Project();
  beforeAll(() => {
    rootfs = busyboxRootfs();
  }, 300_000);
  afterAll(() => p.dispose());

  // [what, the workload, restart's --timeout, when the signal comes, the line it may end with]
  const cases: [string, string, string, number, RegExp][] = [
    // The old workload ignores SIGTERM: the stop half takes its 3 s grace, and the signal comes inside it.
    ["SIGINT during the stop half", 'trap "" TERM; echo up; while :; do sleep 1; done', "3", 1_500, /^iii-worker: restart of (\S+) interrupted before its start; the worker is stopped \[Interrupted\]$/],
    // A quick stop, then a quarter-CPU boot (~4 s): the signal comes while the new VM boots.
    ["SIGINT while the new VM boots", "echo up; exec sleep 1000", "10", 2_500, /^iii-worker: restart of (\S+) interrupted(; the worker was stopped| before its start; the worker is stopped) \[Interrupted\]$/],
  ];
  for (const [what, script, timeout, atMs, line] of cases) {
    it(`${what}: the stop finishes, no start follows or it is cancelled, exit 130, nothing left`, async () => {
      const name = `restart-int-${atMs}`;
      const add = await p.cli(["add", `dir:${rootfs}`, "--name", name, "--cpus", "250m", "--", "sh", "-c", script]);
      expect(add.code, add.stderr).toBe(0);
      expect((await p.cli(["start", name])).code).toBe(0);
      // READY is the workload's spawn: under a quarter CPU its shell takes a while to get to `trap` (then `echo up`).
      await waitFor(() => p.read(`managed/${name}/logs/stdout.log`).includes("up"), 30_000, `${name}'s workload to print up\n${p.diagnostics(name)}`);
      const netnsBefore = netns();
      const run = await startAndSignal(p, name, "SIGINT", [atMs], ["restart", name, "--timeout", timeout]);
      console.log(`[vm] restart, ${what}: CLI exited ${run.code} after ${run.exitedAtMs} ms: ${JSON.stringify(run.stderr)}`);
      expect(run.code, run.stderr).toBe(130);
      expect(run.stderr.trim().split("\n").at(-1)).toMatch(line);
      expect(run.stderr).not.toContain(`started ${name}`);
      await expectNothingLeft(p, [name], netnsBefore);
      const again = await p.cli(["start", name]);
      expect(again.code, again.stderr).toBe(0);
      expect((await p.cli(["stop", name, "--timeout", "1"])).code).toBe(0);
    }, 120_000);
  }
});

describe.skipIf(!!skip)("Ctrl-C on start-all (vm)", () => {
  let rootfs: string;
  const p = new Project();
  beforeAll(() => {
    rootfs = busyboxRootfs();
  }, 300_000);
  afterAll(() => p.dispose());

  it("SIGINT while two VMs boot: both starts are cancelled, one line each, exit 130, nothing left", async () => {
    const names = ["all-a", "all-b"];
    for (const name of names) {
      // A quarter of a CPU each: the boots take seconds, and the signal at 2 s comes inside them.
      const add = await p.cli(["add", `dir:${rootfs}`, "--name", name, "--cpus", "250m", "--", "sh", "-c", "echo up; exec sleep 1000"]);
      expect(add.code, add.stderr).toBe(0);
    }
    const netnsBefore = netns();
    const run = await startAndSignal(p, "", "SIGINT", [2_000], ["start-all"]);
    console.log(`[vm] start-all: CLI exited ${run.code} after ${run.exitedAtMs} ms: ${JSON.stringify(run.stderr)}`);
    expect(run.code, run.stderr).toBe(130);
    const lines = run.stderr.trim().split("\n");
    for (const name of names) {
      expect(lines).toContainEqual(expect.stringMatching(new RegExp(`^iii-worker: start of ${name} interrupted(; the worker was stopped| before its VM was started; nothing is running) \\[Interrupted\\]$`)));
    }
    expect(run.stderr).not.toContain("started all-");
    await expectNothingLeft(p, names, netnsBefore);
  }, 120_000);
});
