import { describe, expect, it } from "vitest";
import { workerPaths } from "../../paths.js";
import { createQemuVmm } from "../../vmm/qemu-vmm.js";
import { SupervisorRun } from "../run.js";
import { PHASES, runPhases, type Phase } from "./index.js";

describe("the supervisor's phases", () => {
  it("run in the order mount, network, control, qemu, vmm, api", () => {
    expect(PHASES.map((p) => p.name)).toEqual(["mount", "network", "control", "qemu", "vmm", "api"]);
  });

  it("a failing phase stops the boot; the one cleanup owner undoes what ran, in reverse, once", async () => {
    const run = new SupervisorRun("w", workerPaths("w", { III_HOME: "/nonexistent-iii-home" }, "/p"), {}, createQemuVmm);
    const undone: string[] = [];
    const phase = (name: string, fail = false): Phase => ({
      name,
      run: async (r) => {
        r.resources.add(`${name} part 1`, () => undone.push(`${name}.1`));
        if (fail) throw new Error(`${name} failed`);
        r.resources.add(`${name} part 2`, () => {
          undone.push(`${name}.2`);
          throw new Error("a failing release does not stop the others");
        });
      },
    });
    await expect(runPhases(run, [phase("a"), phase("b"), phase("c", true), phase("d")])).rejects.toThrow("c failed");
    expect(Object.keys(run.timings)).toEqual(["a", "b"]);
    await run.resources.releaseAll();
    await run.resources.releaseAll();
    expect(undone).toEqual(["c.1", "b.2", "b.1", "a.2", "a.1"]);
  });

  it("phases whose needs are met run together; a phase waits for every phase it needs", async () => {
    const run = new SupervisorRun("w", workerPaths("w", { III_HOME: "/nonexistent-iii-home" }, "/p"), {}, createQemuVmm);
    const events: string[] = [];
    const gate = (name: string, ms: number, needs: string[]): Phase => ({
      name,
      needs,
      run: async () => {
        events.push(`${name}+`);
        await new Promise((r) => setTimeout(r, ms));
        events.push(`${name}-`);
      },
    });
    await runPhases(run, [gate("slow", 60, []), gate("fast", 5, []), gate("last", 1, ["slow", "fast"])]);
    // Both independent phases started before either ended; the dependent one only after both.
    expect(events.slice(0, 2).sort()).toEqual(["fast+", "slow+"]);
    expect(events.slice(2)).toEqual(["fast-", "slow-", "last+", "last-"]);
    expect(Object.keys(run.timings)).toEqual(["fast", "slow", "last"]);
  });

  it("after a failure no new phase starts, and the running ones are waited for before the error is thrown", async () => {
    const run = new SupervisorRun("w", workerPaths("w", { III_HOME: "/nonexistent-iii-home" }, "/p"), {}, createQemuVmm);
    const undone: string[] = [];
    let vmmStarted = false;
    const phases: Phase[] = [
      { name: "mount", needs: [], run: async () => { await new Promise((r) => setTimeout(r, 40)); run.resources.add("mount", () => undone.push("mount")); } },
      { name: "network", needs: [], run: async () => { throw new Error("network failed"); } },
      { name: "vmm", needs: ["mount", "network"], run: async () => { vmmStarted = true; } },
    ];
    await expect(runPhases(run, phases)).rejects.toThrow("network failed");
    // The slow mount had finished and registered its part before runPhases gave up: the cleanup owner has it.
    await run.resources.releaseAll();
    expect(undone).toEqual(["mount"]);
    expect(vmmStarted).toBe(false);
  });

  it("QEMU is spawned beside the mount once the sockets it dials listen; virtiofsd needs the mount; the API comes after, off the boot's path", () => {
    const byName = Object.fromEntries(PHASES.map((p) => [p.name, p.needs]));
    expect(byName.qemu).toEqual(["network", "control"]);
    expect(byName.vmm).toEqual(["qemu", "mount"]);
    expect([byName.mount, byName.network, byName.control]).toEqual([[], [], []]);
    expect(byName.api).toEqual(["vmm"]);
  });
});

