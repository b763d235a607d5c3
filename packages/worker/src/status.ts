import { readFile } from "node:fs/promises";
import { join } from "node:path";
import { isSameProcessAlive } from "./host/process-identity.js";
import { managedDir } from "./paths.js";

/** pending/completed/failed are the WASM tier's (a runner that has not started its guest yet; a guest run that ended). */
export type WorkerState = "pending" | "running" | "stopped" | "crashed" | "completed" | "failed";

export interface VmRecord {
  pid: number;
  startTime: number;
  vmm: string;
  startedAt: string;
  slot?: number;
  sockets?: Record<string, string>;
  children?: { name: string; pid: number; startTime: number }[];
  /** WASM runners: pending until the guest is instantiated. */
  phase?: "pending" | "running";
}

export interface LastExit {
  code: number | null;
  reason: string;
  /** The run ended because a process of the VM died (QEMU, virtiofsd, the FUSE server), not by its workload or a stop. */
  crashed?: boolean;
  endedAt: string;
  timings?: Record<string, number>;
  /** The VM booted but its workload could not be spawned (a missing binary, …): `reason` says why. */
  startFailed?: boolean;
  /** With startFailed: the last lines of the guest's console. */
  consoleTail?: string[];
  /** The workload was killed by the out-of-memory killer (its code is then 137). */
  oomKilled?: boolean;
  /** WASM runs: how the guest's run ended (absent: stopped). */
  state?: "completed" | "failed";
  tier?: "wasm";
}

export interface WorkerStatus {
  name: string;
  state: WorkerState;
  pid?: number;
  lastExit?: LastExit;
}

/** A JSON file, or undefined when it is missing or unreadable. */
export async function readJson<T>(path: string): Promise<T | undefined> {
  try {
    return JSON.parse(await readFile(path, "utf8")) as T;
  } catch {
    return undefined;
  }
}

export async function readVmRecord(name: string, env: NodeJS.ProcessEnv = process.env, projectDir?: string): Promise<VmRecord | undefined> {
  return readJson<VmRecord>(join(managedDir(name, env, projectDir), "vm.json"));
}

/**
 * running: vm.json names a live supervisor (pid + start time match) that has not yet recorded the end of
 * this run; crashed: vm.json remains but its supervisor is gone (it removes vm.json on every orderly exit),
 * or the run's last exit says a process of the VM died; failed: the workload never started; stopped:
 * otherwise. A supervisor that has recorded
 * the end and is still releasing its resources counts as ended.
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
    if (!isSameProcessAlive(record)) status.state = "crashed";
    else if (current) status.state = ended;
    else {
      status.state = record.phase === "pending" ? "pending" : "running";
      status.pid = record.pid;
    }
  } else if (lastExit) {
    status.state = ended;
  }
  return status;
}
