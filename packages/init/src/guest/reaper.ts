// Zombie reaping for PID 1 without stealing statuses from child_process.
//
// libuv reaps the children Node spawned with waitpid(pid) for each of its own
// pids. A waitpid(-1) here could take one of those first and Node would never
// see that child exit. So init only reaps zombies it can prove are not Node's:
// it lists /proc, picks processes in state Z whose parent is init, and skips
// the pids child_process currently owns. Runs on SIGCHLD and every 500 ms.

import { readdirSync, readFileSync } from "node:fs";
import type { ChildProcess } from "node:child_process";
import type { Libc } from "./native.js";

export function parseStat(text: string): { state: string; ppid: number } | null {
  // comm may contain spaces and parentheses: fields start after the last ')'.
  const end = text.lastIndexOf(")");
  if (end < 0) return null;
  const fields = text.slice(end + 2).split(" ");
  const state = fields[0];
  const ppid = Number(fields[1]);
  return state === undefined || !Number.isInteger(ppid) ? null : { state, ppid };
}

export class Reaper {
  private readonly owned = new Set<number>();
  private timer: NodeJS.Timeout | null = null;
  private scheduled = false;
  private readonly onSigchld = (): void => this.schedule();
  reaped = 0;

  constructor(private readonly libc: Libc) {}

  /** Register a child spawned through child_process so its status stays Node's. */
  track(child: ChildProcess): void {
    const pid = child.pid;
    if (pid === undefined) return;
    this.owned.add(pid);
    child.once("exit", () => this.owned.delete(pid));
    child.once("error", () => this.owned.delete(pid));
  }

  start(): void {
    process.on("SIGCHLD", this.onSigchld);
    this.timer = setInterval(() => this.scan(), 500);
    this.timer.unref();
  }

  stop(): void {
    process.off("SIGCHLD", this.onSigchld);
    if (this.timer) clearInterval(this.timer);
    this.timer = null;
  }

  private schedule(): void {
    if (this.scheduled) return;
    this.scheduled = true;
    setTimeout(() => {
      this.scheduled = false;
      this.scan();
    }, 5);
  }

  /** Reap every foreign zombie child now; returns how many. */
  scan(): number {
    let count = 0;
    let entries: string[];
    try {
      entries = readdirSync("/proc");
    } catch {
      return 0;
    }
    for (const entry of entries) {
      const c = entry.charCodeAt(0);
      if (c < 48 || c > 57) continue;
      const pid = Number(entry);
      if (this.owned.has(pid)) continue;
      let stat: ReturnType<typeof parseStat>;
      try {
        stat = parseStat(readFileSync(`/proc/${entry}/stat`, "utf8"));
      } catch {
        continue;
      }
      if (!stat || stat.state !== "Z" || stat.ppid !== process.pid) continue;
      try {
        if (this.libc.waitpidNoHang(pid) !== null) count++;
      } catch {}
    }
    this.reaped += count;
    return count;
  }
}
