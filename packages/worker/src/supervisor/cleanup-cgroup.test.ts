import { spawn } from "node:child_process";
import { existsSync, mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { cgroupNameFor, createCpuCgroup, findCpuHierarchy } from "../host/cpu-cgroup.js";
import { processStartTime } from "../host/process-identity.js";
import { workerPaths } from "../paths.js";
import { cleanupStaleWorker } from "./cleanup.js";

const hierarchy = process.geteuid?.() === 0 ? findCpuHierarchy() : undefined;
if (!hierarchy) console.warn("[supervisor] skipping the crash cleanup's cgroup test: not root, or no cpu controller mounted");

describe.skipIf(!hierarchy)("cleaning up after a supervisor killed with SIGKILL", () => {
  const home = mkdtempSync(join(tmpdir(), "iii-cleanup-cg-"));
  afterAll(() => rmSync(home, { recursive: true, force: true }));

  it("kills its recorded QEMU and removes QEMU's host CPU group (a worker with --cpus)", async () => {
    const paths = workerPaths("cg", { III_HOME: home }, home);
    const group = await createCpuCgroup(cgroupNameFor(paths.dir), 0.5, hierarchy);
    // The QEMU a killed supervisor left, in its group (a real process: the group cannot go while it lives).
    const qemu = spawn("sleep", ["1000"], { stdio: "ignore" });
    await new Promise((resolve) => qemu.once("spawn", resolve));
    await group.place(qemu.pid!);
    expect(readFileSync(join(group.dir, "cgroup.procs"), "utf8")).toContain(String(qemu.pid));
    const exited = new Promise((resolve) => qemu.once("exit", resolve));
    const cleaned = await cleanupStaleWorker(paths, {
      pid: 2 ** 22 + 1, // no such process: the supervisor is gone
      startTime: 1,
      vmm: "qemu",
      startedAt: new Date().toISOString(),
      sockets: { api: paths.apiSock, control: paths.controlSock, net: paths.netSock, qmp: paths.qmpSock },
      children: [{ name: "qemu", pid: qemu.pid!, startTime: processStartTime(qemu.pid!) ?? 0 }],
    });
    await exited;
    expect(cleaned).toContain(`qemu pid ${qemu.pid}`);
    expect(existsSync(group.dir)).toBe(false);
  });
});
