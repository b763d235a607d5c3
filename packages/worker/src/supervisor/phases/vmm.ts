import { IiiError } from "../../errors.js";
import { ROOT_TAG } from "../../launch/plan.js";
import type { Vmm } from "../../vmm/types.js";
import { log, type SupervisorRun } from "../run.js";

/**
 * The VM, made by the run's VMM factory from the plan. When the VMM can (Vmm.startEarly), QEMU is spawned here,
 * beside the FUSE mount, on the shares' sockets made listening for it: its start-up (libraries, TCG, the kernel
 * image) overlaps the mount, and it then waits in the vhost-user handshake until the vmm phase spawns the
 * virtiofsd's. Otherwise the VM is only prepared here. Needs the sockets QEMU dials (network, control).
 */
export async function qemuPhase(run: SupervisorRun): Promise<void> {
  const vm: Vmm = run.createVmm({
    ...run.plan.vm,
    hostEnv: run.env,
    onDaemonExit: (daemon, how) =>
      run.childDied(`virtiofsd of ${daemon.tag === ROOT_TAG ? "the root filesystem" : `share ${daemon.tag}`} (pid ${daemon.pid}) ${describeExit(how)}`),
    // In vm.json before the adapter waits for them: a supervisor killed meanwhile leaves nothing unrecorded.
    onSpawned: () => void recordVmProcesses(run, vm).catch((error: Error) => log(`vm.json: ${error.message}`)),
  });
  run.vmm = vm;
  run.resources.add("vm", () => vm.cleanup());
  if (!vm.startEarly) {
    await vm.prepare();
    if (vm.confinementSummary) log(vm.confinementSummary);
    return;
  }
  await vm.startEarly();
  if (vm.confinementSummary) log(vm.confinementSummary);
  // QEMU is in vm.json at once: a supervisor killed before the vmm phase ends leaves nothing unrecorded.
  await recordVmProcesses(run, vm);
  throwIfStopRequested(run);
}

/** The VM started: its device daemons spawned (after an early QEMU) or everything spawned; QMP is up. Needs the mount. */
export async function vmmPhase(run: SupervisorRun): Promise<void> {
  const vm = run.vmm!;
  throwIfStopRequested(run);
  await vm.start();
  if (run.crash) throw new IiiError("VmBootFailed", run.crash);
  await recordVmProcesses(run, vm);
  // Released before the mounts (in reverse): the VM and its virtiofsd's stop before the views they serve go.
  run.resources.add("vm", () => vm.cleanup());
  throwIfStopRequested(run);
}

/**
 * A stop that came while QEMU was being spawned found nothing to stop (requestStop's vmm.stop() ran before the
 * spawn): end the boot here, so the run's release stops what the spawn started.
 */
function throwIfStopRequested(run: SupervisorRun): void {
  if (run.stopRequested) throw new IiiError("VmBootFailed", `worker "${run.name}" was stopped while booting`);
}

/** vm.json's children: the FUSE servers the mount phase recorded, then the VM's processes as they are now. */
function recordVmProcesses(run: SupervisorRun, vm: Vmm): Promise<void> {
  const own = (run.record.children ?? []).filter((c) => c.name.startsWith("iii-fs"));
  run.record.children = [...own, ...vm.processes().map((p) => ({ name: p.tag ? `${p.role}:${p.tag}` : p.role, pid: p.pid, startTime: p.startTime }))];
  return run.writeRecord();
}

function describeExit(exit: { code: number | null; signal: NodeJS.Signals | null }): string {
  return exit.signal ? `died of ${exit.signal}` : `exited with code ${exit.code}`;
}
