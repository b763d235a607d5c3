import { IiiError } from "../../errors.js";
import { ROOT_TAG } from "../../launch/plan.js";
import type { SupervisorRun } from "../run.js";

/**
 * The VM: made by the run's VMM factory from the plan, prepared and started. When the VMM can (Vmm.startEarly),
 * QEMU is spawned first, on the shares' sockets made listening for it, and its virtiofsd's right after: their
 * start-ups overlap instead of QEMU waiting for each virtiofsd to create its socket.
 */
export async function vmmPhase(run: SupervisorRun): Promise<void> {
  const vm = run.createVmm({
    ...run.plan.vm,
    hostEnv: run.env,
    onDaemonExit: (daemon, how) =>
      run.childDied(`virtiofsd of ${daemon.tag === ROOT_TAG ? "the root filesystem" : `share ${daemon.tag}`} (pid ${daemon.pid}) ${describeExit(how)}`),
  });
  run.vmm = vm;
  run.resources.add("vm", () => vm.cleanup());
  if (vm.startEarly) await vm.startEarly();
  else await vm.prepare();
  await vm.start();
  if (run.crash) throw new IiiError("VmBootFailed", run.crash);
  run.record.children = [...(run.record.children ?? []), ...vm.processes().map((p) => ({ name: p.tag ? `${p.role}:${p.tag}` : p.role, pid: p.pid, startTime: p.startTime }))];
  await run.writeRecord();
}

function describeExit(exit: { code: number | null; signal: NodeJS.Signals | null }): string {
  return exit.signal ? `died of ${exit.signal}` : `exited with code ${exit.code}`;
}
