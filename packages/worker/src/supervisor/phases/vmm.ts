import { IiiError } from "../../errors.js";
import { ROOT_TAG } from "../../launch/plan.js";
import type { SupervisorRun } from "../run.js";

/** The VM: made by the run's VMM factory from the plan, prepared and started (its device daemons, then the VMM). */
export async function vmmPhase(run: SupervisorRun): Promise<void> {
  const vm = run.createVmm({
    ...run.plan.vm,
    hostEnv: run.env,
    onDaemonExit: (daemon, how) =>
      run.childDied(`virtiofsd of ${daemon.tag === ROOT_TAG ? "the root filesystem" : `share ${daemon.tag}`} (pid ${daemon.pid}) ${describeExit(how)}`),
  });
  run.vmm = vm;
  run.resources.add("vm", () => vm.cleanup());
  await vm.prepare();
  await vm.start();
  if (run.crash) throw new IiiError("VmBootFailed", run.crash);
  run.record.children = [...(run.record.children ?? []), ...vm.processes().map((p) => ({ name: p.tag ? `${p.role}:${p.tag}` : p.role, pid: p.pid, startTime: p.startTime }))];
  await run.writeRecord();
}

function describeExit(exit: { code: number | null; signal: NodeJS.Signals | null }): string {
  return exit.signal ? `died of ${exit.signal}` : `exited with code ${exit.code}`;
}
