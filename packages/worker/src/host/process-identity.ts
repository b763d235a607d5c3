import { readFileSync } from "node:fs";

/**
 * The start time of a process in clock ticks since boot (field 22 of /proc/<pid>/stat), or undefined when
 * the process does not exist. Together with the pid it identifies a process: a reused pid has another start time.
 */
export function processStartTime(pid: number): number | undefined {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, "utf8");
    // comm (field 2) may contain spaces and parentheses: parse after the last ')'.
    const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
    const state = fields[0];
    if (state === "Z" || state === "X") return undefined;
    const start = Number(fields[19]);
    return Number.isFinite(start) ? start : undefined;
  } catch {
    return undefined;
  }
}

export interface ProcessIdentity {
  pid: number;
  startTime: number;
}

export function isSameProcessAlive(identity: ProcessIdentity): boolean {
  return processStartTime(identity.pid) === identity.startTime;
}
