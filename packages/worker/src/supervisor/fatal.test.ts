// Security review 2, s14 #4: an error nobody handled in the supervisor (it was a guest's WORKLOAD_EXIT with
// `signal: {"toString":1}`, thrown in the run loop's `then`) exited Node at once and orphaned QEMU and virtiofsd.
import { spawn } from "node:child_process";
import { EventEmitter } from "node:events";
import { mkdirSync, mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterEach, describe, expect, it } from "vitest";
import { alive } from "../../test/stand-ins.js";
import { workerPaths } from "../paths.js";
import { createQemuVmm } from "../vmm/qemu-vmm.js";
import { installFatalTeardown } from "./fatal.js";
import { SupervisorRun } from "./run.js";

const cleanups: Array<() => void> = [];
afterEach(() => {
  for (const c of cleanups.splice(0)) c();
});

describe("a fatal error in the supervisor", () => {
  it("tears the VM down (no orphan), records the crash, and exits 1", async () => {
    const home = mkdtempSync(join(tmpdir(), "iii-fatal-"));
    const paths = workerPaths("w", { III_HOME: home }, home);
    mkdirSync(paths.dir, { recursive: true });
    // QEMU's stand-in: a real process the run owns, released by the run's cleanup owner as the vm phase's is.
    const qemu = spawn("sleep", ["1000"], { stdio: "ignore" });
    const exited = new Promise<void>((r) => qemu.once("exit", () => r()));
    cleanups.push(() => {
      qemu.kill("SIGKILL");
      rmSync(home, { recursive: true, force: true });
    });
    const run = new SupervisorRun("w", paths, {}, createQemuVmm);
    run.resources.add("vm", async () => {
      qemu.kill("SIGKILL");
      await exited;
    });
    const proc = new EventEmitter();
    let exitCode: number | undefined;
    installFatalTeardown(run, proc, (code) => (exitCode = code));

    // What the forged frame did: a TypeError rejecting a promise nobody handles.
    const forged = { toString: 1 };
    proc.emit("unhandledRejection", new TypeError("Cannot convert object to primitive value"), Promise.resolve(forged));
    proc.emit("uncaughtException", new Error("a second one while tearing down"));
    for (let i = 0; i < 300 && exitCode === undefined; i++) await new Promise((r) => setTimeout(r, 10));

    expect(exitCode).toBe(1);
    expect(alive(qemu.pid!)).toBe(false);
    const lastExit = JSON.parse(readFileSync(paths.lastExit, "utf8")) as { crashed?: boolean; reason: string };
    expect(lastExit.crashed).toBe(true);
    expect(lastExit.reason).toMatch(/the supervisor failed: Cannot convert object to primitive value/);
  });
});
