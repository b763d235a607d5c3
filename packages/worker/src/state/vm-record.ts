import { readFile } from "node:fs/promises";
import { join } from "node:path";
import { managedDir } from "../paths.js";

/**
 * The files a run of a worker leaves in its managed directory: `vm.json` (the live run: its supervisor,
 * sockets, slot and children; removed on every orderly exit) and `last-exit.json` (how the last run ended).
 */
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
  /** VMs: when init reported READY (the API socket listens from before then until the run ends). */
  guestReadyAt?: string;
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
