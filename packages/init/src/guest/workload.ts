// The workload: one process group (its own session), output to the control
// channel (stream 0) or init's stdout/stderr, signals forwarded to the group,
// SIGKILL after the grace period, exit reported once the whole group is gone.

import type { Readable } from "node:stream";
import type { ControlChannel } from "../protocol/channel.js";
import type { WorkloadExitMessage } from "../protocol/messages.js";
import type { WorkerCgroup } from "./cgroup.js";
import { killGroup, spawnGuestProcess, type GuestProcess, type ProcessSpec } from "./process.js";
import type { Reaper } from "./reaper.js";

const GROUP_POLL_MS = 20;
const STUCK_AFTER_KILL_MS = 5000;

export class Workload {
  generation = -1;
  private proc: GuestProcess | null = null;
  private requested = false;
  private escalated = false;
  private escalation: NodeJS.Timeout | null = null;
  private oomBaseline = 0;
  private lastKillAt: number | null = null;

  constructor(
    private readonly spec: Omit<ProcessSpec, "stdio" | "cgroup">,
    private readonly cgroup: WorkerCgroup | null,
    private readonly reaper: Reaper,
    private readonly channel: ControlChannel | null,
  ) {}

  get pid(): number | null {
    return this.proc?.pid ?? null;
  }

  /** Spawn a new generation; throws SpawnError. Resolves with its exit report. */
  async start(): Promise<{ pid: number; done: Promise<WorkloadExitMessage> }> {
    this.generation += 1;
    this.requested = false;
    this.escalated = false;
    this.lastKillAt = null;
    this.oomBaseline = this.cgroup?.workload.oomKills() ?? 0;
    const proc = await spawnGuestProcess(
      { ...this.spec, stdio: this.channel ? "pipe" : "inherit", cgroup: this.cgroup?.workload ?? null },
      this.reaper,
    );
    this.proc = proc;
    proc.stdin?.end();
    this.channel?.send({ type: "WORKLOAD_STARTED", stream: 0, pid: proc.pid, generation: this.generation });
    return { pid: proc.pid, done: this.waitDone(proc) };
  }

  /** Forward a signal to the whole group. */
  signal(signal: NodeJS.Signals): void {
    if (this.proc) killGroup(this.proc.pid, signal);
  }

  /** SIGTERM (or `signal`) to the group now, SIGKILL to the group and its cgroup leaf after graceMs. */
  stop(graceMs: number, signal: NodeJS.Signals = "SIGTERM"): void {
    const proc = this.proc;
    if (!proc) return;
    this.requested = true;
    killGroup(proc.pid, signal);
    if (this.escalation) return;
    this.escalation = setTimeout(() => {
      this.escalated = true;
      this.lastKillAt = performance.now();
      killGroup(proc.pid, "SIGKILL");
      this.cgroup?.workload.kill();
    }, Math.max(0, graceMs));
  }

  private async waitDone(proc: GuestProcess): Promise<WorkloadExitMessage> {
    const pumps = this.channel
      ? [this.pump("STDOUT", proc.stdout, process.stdout), this.pump("STDERR", proc.stderr, process.stderr)]
      : [];
    const status = await proc.exited;
    // The leader is gone. Left-over members die now unless a stop is in
    // progress, which escalates on its own schedule.
    if (!this.requested) {
      killGroup(proc.pid, "SIGKILL");
      this.lastKillAt = performance.now();
    }
    // Wait for the whole group (the escalation timer SIGKILLs it after the
    // grace period). A process stuck in uninterruptible sleep must not hang
    // init forever: give up 5 s after the last SIGKILL.
    while (killGroup(proc.pid, 0)) {
      if (this.lastKillAt !== null && performance.now() - this.lastKillAt > STUCK_AFTER_KILL_MS) break;
      this.reaper.scan();
      await new Promise((r) => setTimeout(r, GROUP_POLL_MS));
    }
    if (this.escalation) clearTimeout(this.escalation);
    this.escalation = null;
    // Members that left the process group (setsid daemons) are still in the
    // workload's leaf (execs have leaves of their own and live on).
    if (this.cgroup) {
      this.cgroup.workload.kill();
      await this.cgroup.workload.waitEmpty(STUCK_AFTER_KILL_MS);
    }
    await Promise.race([Promise.all(pumps), new Promise((r) => setTimeout(r, 2000))]);
    this.proc = null;
    const oomKilled = (this.cgroup?.workload.oomKills() ?? 0) > this.oomBaseline;
    const message: WorkloadExitMessage = {
      type: "WORKLOAD_EXIT",
      stream: 0,
      ...status,
      timedOut: false,
      generation: this.generation,
      oomKilled,
      requested: this.requested,
      escalated: this.escalated,
    };
    this.channel?.send(message);
    return message;
  }

  private async pump(type: "STDOUT" | "STDERR", source: Readable | null, fallback: NodeJS.WritableStream): Promise<void> {
    if (!source) return;
    for await (const chunk of source) {
      const data = chunk as Buffer;
      if (this.channel && !this.channel.closed) {
        try {
          await this.channel.sendData(0, type, data);
          continue;
        } catch {}
      }
      // No host any more: keep the workload running, output to the console.
      fallback.write(data);
    }
  }
}
