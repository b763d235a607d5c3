import { ExecRegistry } from "../../api/exec-registry.js";
import { ApiServer } from "../../api/server.js";
import { IiiError } from "../../errors.js";
import { log, type SupervisorRun } from "../run.js";

/** The worker's API socket (status, exec, restart, the one stop) and the registry of its execs. */
export async function apiPhase(run: SupervisorRun): Promise<void> {
  const { plan } = run;
  const execs = new ExecRegistry(() => (run.readyAt !== undefined && !run.crash ? run.control : undefined));
  run.execs = execs;
  const stack = run.stack!;
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
      resources: { vcpus: plan.launch.vcpus, memoryBytes: plan.launch.memoryBytes },
      timings: run.timings,
      execs: { running: execs.runningCount, max: execs.maxExecs },
      network: { policy: stack.policy.describe(), counters: stack.counters, dns: stack.dns.counters, flows: stack.snapshot() },
      workloadExit: run.workloadExit ?? null,
    }),
    stop: (graceMs) => void run.requestStop("POST /stop", graceMs),
    ping: async () => {
      if (run.readyAt === undefined || !run.control) throw new IiiError("VmNotRunning", "the guest is not ready");
      return run.control.ping(5_000);
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
