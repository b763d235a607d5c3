import { readdirSync, readlinkSync, statSync } from "node:fs";

/**
 * What this process holds open under `dir` (from /proc/self/fd): its fds there, and the bytes of files removed or
 * renamed over while open (`du` and `ls` miss them, `df` counts them), each inode once.
 */
export function heldUnder(dir: string): { fds: number; deletedBytes: number } {
  let fds = 0;
  const deleted = new Map<number, number>();
  for (const fd of readdirSync("/proc/self/fd")) {
    let target: string;
    try {
      target = readlinkSync(`/proc/self/fd/${fd}`);
    } catch {
      continue; // closed meanwhile (the readdir's own fd)
    }
    if (!target.startsWith(`${dir}/`)) continue;
    fds += 1;
    if (target.endsWith(" (deleted)")) {
      try {
        const st = statSync(`/proc/self/fd/${fd}`);
        deleted.set(st.ino, st.size);
      } catch {
        // closed meanwhile
      }
    }
  }
  return { fds, deletedBytes: [...deleted.values()].reduce((a, b) => a + b, 0) };
}
