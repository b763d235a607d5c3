import { join } from "node:path";
import { isSameProcessAlive } from "./host/process-identity.js";
import { managedDir } from "./paths.js";
import { readJson, type LastExit, type VmRecord } from "./state/vm-record.js";
import type { HealthRecord } from "./supervisor/health.js";

/** pending/completed/failed are the WASM tier's (a runner that has not started its guest yet; a guest run that ended). */
export type WorkerState = "pending" | "running" | "stopped" | "crashed" | "completed" | "failed";

export interface WorkerStatus {
  name: string;
  state: WorkerState;
  pid?: number;
  lastExit?: LastExit;
  /** A running VM whose init has reported READY (its API socket listens for the rest of the run). */
  guestReady?: boolean;
  /** Set while a running guest's init does not answer the supervisor's pings (supervisor/health.ts). */
  unhealthy?: { reason: string; since: string };
}

/**
 * running: vm.json names a live supervisor (pid + start time match) that has not yet recorded the end of
 * this run; crashed: vm.json remains but its supervisor is gone (it removes vm.json on every orderly exit),
 * or the run's last exit says a process of the VM died; failed: the workload never started; stopped:
 * otherwise. A supervisor that has recorded
 * the end and is still releasing its resources counts as ended, unless its QEMU (vm.json's child, pid + start
 * time) still runs: a workload's exit is the guest's word, so with the VM up the worker is running, its lastExit
 * kept for the caller (security review 2, s14 #2: a forged WORKLOAD_EXIT showed a running VM as stopped).
 */
export async function workerStatus(name: string, env: NodeJS.ProcessEnv = process.env, projectDir?: string): Promise<WorkerStatus> {
  const dir = managedDir(name, env, projectDir);
  const record = await readJson<VmRecord>(join(dir, "vm.json"));
  const lastExit = await readJson<LastExit>(join(dir, "last-exit.json"));
  const status: WorkerStatus = { name, state: "stopped" };
  // With vm.json present, an exit recorded before this run began is the previous run's: not this one's status.
  const current = lastExit && (!record || lastExit.endedAt >= record.startedAt) ? lastExit : undefined;
  if (current) status.lastExit = current;
  const ended = current?.crashed ? "crashed" : current?.startFailed ? "failed" : (current?.state ?? "stopped");
  if (record) {
    const hostEnded = current !== undefined && (current.crashed || current.startFailed || !vmProcessAlive(record));
    // A supervisor gone with vm.json left behind crashed; one that ended in order between our two reads removed
    // vm.json after recording its end (read again: the end just read is this run's).
    if (!isSameProcessAlive(record)) status.state = (await readJson<VmRecord>(join(dir, "vm.json"))) ? "crashed" : ended;
    else if (current && hostEnded) status.state = ended;
    else {
      status.state = record.phase === "pending" ? "pending" : "running";
      status.pid = record.pid;
      if (record.guestReadyAt !== undefined) status.guestReady = true;
      const health = await readJson<HealthRecord>(join(dir, "health.json"));
      if (health?.state === "unhealthy" && health.since >= record.startedAt) status.unhealthy = { reason: health.reason ?? "unknown", since: health.since };
    }
  } else if (lastExit) {
    status.state = ended;
  }
  return status;
}

/** The run's QEMU, as vm.json records it, is still the same live process: the VM is up, whatever the guest said. */
function vmProcessAlive(record: VmRecord): boolean {
  return (record.children ?? []).some((child) => child.name === "qemu" && isSameProcessAlive(child));
}
