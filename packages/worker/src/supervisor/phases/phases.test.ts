import { describe, expect, it } from "vitest";
import { workerPaths } from "../../paths.js";
import { createQemuVmm } from "../../vmm/qemu-vmm.js";
import { SupervisorRun } from "../run.js";
import { PHASES, runPhases, type Phase } from "./index.js";

describe("the supervisor's phases", () => {
  it("run in the order mount, network, api, control, vmm", () => {
    expect(PHASES.map((p) => p.name)).toEqual(["mount", "network", "api", "control", "vmm"]);
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
});
