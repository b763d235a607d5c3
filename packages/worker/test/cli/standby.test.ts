import { execFileSync } from "node:child_process";
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, statSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { setTimeout as sleep } from "node:timers/promises";
import { afterAll, describe, expect, it } from "vitest";
import { workerPaths } from "../../src/paths.js";
import { runWorkerCli } from "../helpers.js";

const dir = mkdtempSync(join(tmpdir(), "iii-standby-"));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

/** Processes whose command line names this project directory (a supervisor's argv ends with it). */
function processesOf(projectDir: string): string[] {
  const out = execFileSync("ps", ["-eo", "pid=,args="], { encoding: "utf8" });
  return out.split("\n").filter((line) => line.includes("supervisor.js") && line.includes(projectDir));
}

/**
 * A project whose worker `app` (from a `dir:` rootfs) ran before: its log directory exists, so `start` spawns its
 * supervisor in standby at once.
 */
async function projectThatRanBefore(): Promise<{ cwd: string; env: Record<string, string>; rootfs: string; paths: ReturnType<typeof workerPaths> }> {
  const cwd = mkdtempSync(join(dir, "p-"));
  const env = { III_HOME: join(cwd, "home") };
  const rootfs = join(cwd, "rootfs");
  mkdirSync(rootfs);
  expect((await runWorkerCli(["add", `dir:${rootfs}`, "--name", "app", "--", "true"], { cwd, env })).code).toBe(0);
  const paths = workerPaths("app", env, cwd);
  mkdirSync(paths.logs, { recursive: true });
  return { cwd, env, rootfs, paths };
}

/** No process of the project stays (within 5 s), and nothing of a started worker was created. */
async function expectNothingLeft(cwd: string, paths: ReturnType<typeof workerPaths>): Promise<void> {
  const deadline = Date.now() + 5_000;
  while (processesOf(cwd).length > 0 && Date.now() < deadline) await sleep(50);
  expect(processesOf(cwd)).toEqual([]);
  for (const made of [paths.vmJson, paths.launch, paths.mnt, paths.upper, paths.runtime, paths.lock]) expect(existsSync(made), made).toBe(false);
}

describe("start's standby supervisor (spawned before the checks when the worker ran before)", () => {
  it("a failing check ends it: the start fails as before, no process stays, nothing is created", async () => {
    const { cwd, env, rootfs, paths } = await projectThatRanBefore();
    rmSync(rootfs, { recursive: true });
    const logBefore = existsSync(paths.supervisorLog) ? statSync(paths.supervisorLog).size : 0;

    const run = await runWorkerCli(["start", "app"], { cwd, env });
    expect(run.code).not.toBe(0);
    expect(run.stderr.trim().split("\n")).toEqual([`iii-worker: rootfs directory ${rootfs} does not exist [RootfsNotFound]`]);

    await expectNothingLeft(cwd, paths);
    expect(existsSync(paths.supervisorLog) ? readFileSync(paths.supervisorLog, "utf8").slice(logBefore) : "").toBe("");
  });

  it("spawned by cli.ts before commander parses: a bad option ends it too, and the CLI does not wait on it", async () => {
    const { cwd, env, paths } = await projectThatRanBefore();

    for (const args of [["start", "app", "--no-such-option"], ["start", "app", "--pull", "sometimes"], ["start", "app", "--boot-timeout", "soon"]]) {
      const t0 = Date.now();
      const run = await runWorkerCli(args, { cwd, env });
      expect(run.code, args.join(" ")).not.toBe(0);
      expect(run.stderr.trim().split("\n")).toHaveLength(1);
      expect(Date.now() - t0, args.join(" ")).toBeLessThan(5_000);
    }
    await expectNothingLeft(cwd, paths);
  });
});
