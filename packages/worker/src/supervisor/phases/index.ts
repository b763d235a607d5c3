import type { SupervisorRun } from "../run.js";
import { apiPhase } from "./api.js";
import { controlPhase } from "./control.js";
import { mountPhase } from "./mount.js";
import { networkPhase } from "./network.js";
import { qemuPhase, vmmPhase } from "./vmm.js";

export interface Phase {
  name: string;
  /** Sets up one part of the VM, registering what it acquired with the run's cleanup owner as it goes. */
  run: (run: SupervisorRun) => Promise<void>;
  /**
   * The phases that must have ended before this one starts; default: the phase listed before it (a plain
   * sequence). Phases whose needs are met run at the same time.
   */
  needs?: readonly string[];
}

/**
 * A VM's boot; each phase's end is recorded in the run's timings under its name. The FUSE mount, the network
 * stack and the control socket do not depend on each other and come up together; QEMU is spawned as soon as
 * the sockets it dials (network, control) listen, beside the mount, and the vmm phase (its virtiofsd's, QMP)
 * needs the mount (virtiofsd serves it). The API socket comes up
 * once QEMU runs: loading its HTTP and WebSocket servers (~40 ms of the supervisor's one thread here) beside the
 * mount held up the mount's and the network's callbacks, and so QEMU's spawn; after it, it overlaps the guest's
 * boot (a second or more under TCG), and the boot still reports ready only once every phase has ended. A stop
 * sent before the API listens is a SIGTERM (lifecycle.ts stopWorker).
 */
export const PHASES: readonly Phase[] = [
  { name: "mount", run: mountPhase, needs: [] },
  { name: "network", run: networkPhase, needs: [] },
  { name: "control", run: controlPhase, needs: [] },
  { name: "qemu", run: qemuPhase, needs: ["network", "control"] },
  { name: "vmm", run: vmmPhase, needs: ["qemu", "mount"] },
  { name: "api", run: apiPhase, needs: ["vmm"] },
];

/**
 * Runs the phases as soon as their needs have ended. The first failure stops the boot: no phase starts after
 * it, the ones already running are waited for (so everything they acquired is registered with the cleanup
 * owner before it releases), and the first error is thrown.
 */
export async function runPhases(run: SupervisorRun, phases: readonly Phase[] = PHASES): Promise<void> {
  const names = new Set(phases.map((p) => p.name));
  const needsOf = phases.map((p, i) => p.needs ?? (i > 0 ? [phases[i - 1]!.name] : []));
  needsOf.forEach((needs, i) => {
    for (const need of needs) if (!names.has(need)) throw new Error(`phase ${phases[i]!.name} needs an unknown phase ${need}`);
  });
  const done = new Set<string>();
  const started = new Set<number>();
  const running = new Set<Promise<void>>();
  let failure: { error: unknown } | undefined;
  for (;;) {
    if (!failure) {
      phases.forEach((phase, i) => {
        if (started.has(i) || !needsOf[i]!.every((n) => done.has(n))) return;
        started.add(i);
        const p: Promise<void> = phase
          .run(run)
          .then(
            () => {
              run.mark(phase.name);
              done.add(phase.name);
            },
            (error: unknown) => {
              failure ??= { error };
            },
          )
          .finally(() => running.delete(p));
        running.add(p);
      });
    }
    if (running.size === 0) break;
    await Promise.race(running);
  }
  if (failure) throw failure.error;
  if (done.size !== phases.length) throw new Error(`phases never started (circular needs): ${phases.filter((p) => !done.has(p.name)).map((p) => p.name).join(", ")}`);
}
