import type { SupervisorRun } from "../run.js";
import { apiPhase } from "./api.js";
import { controlPhase } from "./control.js";
import { mountPhase } from "./mount.js";
import { networkPhase } from "./network.js";
import { vmmPhase } from "./vmm.js";

export interface Phase {
  name: string;
  /** Sets up one part of the VM, registering what it acquired with the run's cleanup owner as it goes. */
  run: (run: SupervisorRun) => Promise<void>;
}

/** A VM's boot, in order; each phase's end is recorded in the run's timings under its name. */
export const PHASES: readonly Phase[] = [
  { name: "mount", run: mountPhase },
  { name: "network", run: networkPhase },
  { name: "api", run: apiPhase },
  { name: "control", run: controlPhase },
  { name: "vmm", run: vmmPhase },
];

export async function runPhases(run: SupervisorRun, phases: readonly Phase[] = PHASES): Promise<void> {
  for (const phase of phases) {
    await phase.run(run);
    run.mark(phase.name);
  }
}
