import { IiiError } from "../../errors.js";
import { log, type SupervisorRun } from "../run.js";

/** The worker's API socket (status, exec, restart, the one stop) and the registry of its execs. */
export async function apiPhase(run: SupervisorRun): Promise<void> {
  // Loaded here, not with the supervisor: the HTTP and WebSocket servers load while the guest boots (phases/index.ts).
  const [{ ExecRegistry }, { ApiServer }] = await Promise.all([import("../../api/exec-registry.js"), import("../../api/server.js")]);
  const { plan } = run;
  const execs = new ExecRegistry(() => (run.readyAt !== undefined && !run.crash ? run.control : undefined));
  run.execs = execs;
  const api = new ApiServer({
    paths: run.paths,
    execs,
    status: () => ({
      name: run.name,
      state: run.readyAt === undefined ? "booting" : run.stopRequested ? "stopping" : "running",
      pid: process.pid,
      uptimeMs: Math.round(performance.now() - run.startedAt),
      slot: plan.network.slot,
      guestIp: plan.addresses.guest,
      gateway: plan.addresses.gateway,
      resources: { vcpus: plan.launch.vcpus, memoryBytes: plan.launch.memoryBytes, diskBytes: plan.launch.diskBytes },
      timings: run.timings,
      execs: { running: execs.runningCount, max: execs.maxExecs },
      // The network stack is up before the API (phases/index.ts); null only for a run without one.
      network: run.stack ? { policy: run.stack.policy.describe(), counters: run.stack.counters, dns: run.stack.dns.counters, flows: run.stack.snapshot() } : null,
      workloadExit: run.workloadExit ?? null,
    }),
    stop: (graceMs) => void run.requestStop("POST /stop", graceMs),
    ping: async () => {
      if (run.readyAt === undefined || !run.control) throw new IiiError("VmNotRunning", "the guest is not ready");
      return run.control.ping(5_000);
    },
    vcpuRegisters: async () => {
      if (!run.vmm?.vcpuRegisters) throw new IiiError("VmNotRunning", "the VM is not running");
      return run.vmm.vcpuRegisters();
    },
    virtioState: async () => {
      if (!run.vmm?.virtioState) throw new IiiError("VmNotRunning", "the VM is not running");
      return run.vmm.virtioState();
    },
    restart: (graceMs) => {
      if (run.readyAt === undefined || !run.control || run.stopRequested) return false;
      log(`restarting the workload (grace ${graceMs} ms)`);
      run.control.restartWorkload(graceMs);
      return true;
    },
  });
  await api.listen();
  run.resources.add("api socket", async () => {
    execs.close();
    await api.close();
  });
}
