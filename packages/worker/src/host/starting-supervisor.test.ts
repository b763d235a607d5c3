import { spawn, type ChildProcess } from "node:child_process";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { managedDir } from "../paths.js";
import { findStartingSupervisor } from "./starting-supervisor.js";

describe("findStartingSupervisor", () => {
  const dir = mkdtempSync(join(tmpdir(), "iii-starting-"));
  const home = join(dir, "home");
  const project = join(dir, "project");
  let child: ChildProcess;

  beforeAll(async () => {
    // A process with a supervisor's command line (`node …/supervisor.js <name> <project-dir>`) and III_HOME.
    writeFileSync(join(dir, "supervisor.js"), "setInterval(() => {}, 1000); process.send?.('up');\n");
    child = spawn(process.execPath, [join(dir, "supervisor.js"), "alpha", project], { env: { ...process.env, III_HOME: home }, stdio: ["ignore", "ignore", "ignore", "ipc"] });
    await new Promise((resolve) => child.once("message", resolve));
  });
  afterAll(() => {
    child.kill("SIGKILL");
    rmSync(dir, { recursive: true, force: true });
  });

  it("finds the supervisor of the worker whose state lives in that directory, with its start time", () => {
    const found = findStartingSupervisor("alpha", managedDir("alpha", { III_HOME: home }, project));
    expect(found?.pid).toBe(child.pid);
    expect(found?.startTime).toBeGreaterThan(0);
  });

  it("ignores another worker's name, another project and another III_HOME", () => {
    expect(findStartingSupervisor("beta", managedDir("beta", { III_HOME: home }, project))).toBeUndefined();
    expect(findStartingSupervisor("alpha", managedDir("alpha", { III_HOME: home }, join(dir, "other")))).toBeUndefined();
    expect(findStartingSupervisor("alpha", managedDir("alpha", { III_HOME: join(dir, "other-home") }, project))).toBeUndefined();
  });
});
