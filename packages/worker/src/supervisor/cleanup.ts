import { execFile } from "node:child_process";
import { readFile, rm } from "node:fs/promises";
import { promisify } from "node:util";
import { cgroupNameFor, removeCpuCgroup } from "../host/cpu-cgroup.js";
import { processStartTime, type ProcessIdentity } from "../host/process-identity.js";
import type { WorkerPaths } from "../paths.js";
import type { VmRecord } from "../state/vm-record.js";

const run = promisify(execFile);

/** SIGKILLs a recorded process only if it is still the same process (pid and start time match). */
export function killIfSame(identity: ProcessIdentity, signal: NodeJS.Signals = "SIGKILL"): boolean {
  if (processStartTime(identity.pid) !== identity.startTime) return false;
  try {
    process.kill(identity.pid, signal);
    return true;
  } catch {
    return false;
  }
}

/** Mountpoints under `prefix` from /proc/self/mountinfo (deepest first), so stale FUSE mounts can be found. */
export async function mountsUnder(prefix: string): Promise<string[]> {
  let text: string;
  try {
    text = await readFile("/proc/self/mountinfo", "utf8");
  } catch {
    return [];
  }
  const unescape = (s: string) => s.replace(/\\([0-7]{3})/g, (_, oct: string) => String.fromCharCode(parseInt(oct, 8)));
  const points = text
    .split("\n")
    .map((line) => line.split(" ")[4])
    .filter((p): p is string => !!p)
    .map(unescape)
    .filter((p) => p === prefix || p.startsWith(`${prefix}/`));
  return [...new Set(points)].sort((a, b) => b.length - a.length);
}

export async function lazyUnmount(mountpoint: string): Promise<void> {
  try {
    await run("fusermount", ["-u", "-z", mountpoint]);
  } catch {
    await run("umount", ["-l", mountpoint]).catch(() => {});
  }
}

/**
 * Releases what a supervisor killed with SIGKILL left behind: its QEMU and virtiofsd (by recorded pid +
 * start time, so a reused pid is never touched), FUSE mounts under the worker's dir, and sockets.
 * Returns what it cleaned, for the caller's log.
 */
export async function cleanupStaleWorker(paths: WorkerPaths, record: VmRecord | undefined): Promise<string[]> {
  const cleaned: string[] = [];
  if (record) {
    if (killIfSame(record)) cleaned.push(`supervisor pid ${record.pid}`);
    for (const child of record.children ?? []) {
      if (killIfSame(child)) cleaned.push(`${child.name} pid ${child.pid}`);
    }
  }
  for (const mountpoint of await mountsUnder(paths.dir)) {
    await lazyUnmount(mountpoint);
    cleaned.push(`mount ${mountpoint}`);
  }
  // QEMU's host CPU group (--cpus): empty once the QEMU killed above has exited.
  await removeCpuCgroup(cgroupNameFor(paths.dir), undefined, 2_000);
  for (const path of [paths.apiSock, paths.controlSock, paths.consoleSock, paths.netSock, paths.qmpSock, paths.vmJson, paths.health]) {
    await rm(path, { force: true });
  }
  await rm(paths.runtime, { recursive: true, force: true });
  return cleaned;
}
