import type { ConsoleMark } from "../vmm/console-log.js";
import { setTimeout as sleep } from "node:timers/promises";
import type { MountHandle, MountServer } from "@iii/filesystem/client";
import type { HostControl, WorkloadExitMessage } from "@iii/init";
import type { NetworkStack } from "@iii/network";
import type { ExecRegistry } from "../api/exec-registry.js";
import type { VmPlan } from "../launch/plan.js";
import type { LaunchRequest } from "../launch/request.js";
import { DEFAULT_STOP_GRACE_MS } from "../launch/request.js";
import type { WorkerPaths } from "../paths.js";
import type { LastExit, VmRecord } from "../state/vm-record.js";
import { writeJsonAtomic } from "../util/atomic-write.js";
import type { RotatingLog } from "../util/rotating-log.js";
import type { Vmm, VmExit, VmmFactory } from "../vmm/types.js";
import { ResourceOwner } from "./resources.js";

/** After the grace period, how long init may take to kill, sync and reboot before QEMU is stopped. */
const SHUTDOWN_MARGIN_MS = 5_000;
/** Init kills what is left (1 s), flushes its channel (2 s), syncs and reboots right after WORKLOAD_EXIT; a VM up this long after is stopped. */
export const REBOOT_AFTER_EXIT_MS = 30_000;

export function log(message: string): void {
  process.stderr.write(`${new Date().toISOString()} ${message}\n`);
}

/** What a run's phases set up and its end reads: one object instead of a function's closure variables. */
export class SupervisorRun {
  /** The one cleanup owner: undoes what ran, in reverse order. */
  readonly resources = new ResourceOwner(log);
  /** The supervisor process's start (performance.now()'s origin): the timings include Node's start-up and module loading. */
  readonly startedAt = 0;
  /** Cumulative ms since the supervisor process started, at the end of each phase ("load": its code is loaded). */
  readonly timings: Record<string, number> = {};
  request: LaunchRequest | undefined;
  /** Where this run's part of the console log starts (a failure or a crash quotes only its own lines). */
  consoleFrom: ConsoleMark | undefined;
  plan!: VmPlan;
  record!: VmRecord;
  vmm: Vmm | undefined;
  /** The root mount's FUSE server, started before the supervisor loaded its code (main.ts); used by the mount phase. */
  rootServer: MountServer | undefined;
  /** The FUSE mounts this run serves (the root, then the writable shares), each by its own server process. */
  readonly mounts: MountHandle[] = [];
  control: HostControl | undefined;
  execs: ExecRegistry | undefined;
  stack: NetworkStack | undefined;
  /** The control port's connection from the guest (set by the control phase). */
  controlConnected!: Promise<import("node:net").Socket>;
  stdoutLog!: RotatingLog;
  stderrLog!: RotatingLog;
  stopRequested = false;
  lastExitWritten = false;
  workloadExit: WorkloadExitMessage | undefined;
  readyAt: number | undefined;
  /** Set when a process of the VM died on its own: the run ends as crashed, naming it. */
  crash: string | undefined;
  /** After the guest reports its workload's exit, how long init may take to reboot before the VM is stopped. */
  rebootAfterExitMs = REBOOT_AFTER_EXIT_MS;

  constructor(
    readonly name: string,
    readonly paths: WorkerPaths,
    readonly env: NodeJS.ProcessEnv,
    readonly createVmm: VmmFactory,
  ) {}

  mark(phase: string): void {
    this.timings[phase] = Math.round(performance.now() - this.startedAt);
  }

  writeRecord(): Promise<void> {
    return writeJsonAtomic(this.paths.vmJson, this.record);
  }

  /**
   * Any child that dies takes the VM with it: a dead FUSE server or virtiofsd leaves the guest's I/O hanging
   * forever, so execs fail at once with the reason, the crash is recorded before anything is released (list
   * says crashed while the teardown runs), and the VM is ended.
   */
  childDied(what: string): void {
    if (this.crash || this.stopRequested) return;
    this.crash = what;
    log(`${what}: tearing the VM down`);
    this.execs?.abortAll(`worker "${this.name}" crashed: ${what}`);
    void this.writeLastExit(undefined, undefined, what, true).then(() => (this.lastExitWritten = true), () => {});
    void this.vmm?.stop({ timeoutMs: 500 }).catch(() => {});
  }

  /** The one stop: a SIGTERM/SIGINT/SIGHUP (the launch's grace) and `POST /stop {graceMs}` both end here. */
  async requestStop(reason: string, graceMs?: number): Promise<void> {
    if (this.stopRequested) return;
    this.stopRequested = true;
    const grace = graceMs ?? this.request?.stopGraceMs ?? DEFAULT_STOP_GRACE_MS;
    if (this.readyAt === undefined) {
      // Booting: no workload runs yet to be given its grace, and init reads a SHUTDOWN only after READY, so a
      // graceful stop would wait for the boot to finish first (seconds under TCG). The VM is ended now; a boot in
      // a phase before QEMU ends at that phase's check (vmm.ts).
      log(`${reason}: stopping while booting: the VM is ended without a shutdown (no workload runs yet)`);
      await this.vmm?.stop({ timeoutMs: 2_000 });
      return;
    }
    log(`${reason}: stopping (grace ${grace} ms)`);
    if (this.control && this.vmm) {
      this.control.shutdown(grace);
      await Promise.race([this.vmm.wait(), sleep(grace + SHUTDOWN_MARGIN_MS, undefined, { ref: false })]);
    }
    await this.vmm?.stop({ timeoutMs: 2_000 });
  }

  async writeLastExit(exit: WorkloadExitMessage | undefined, vmExit?: VmExit, failure?: string, crashed = false, extra: Partial<LastExit> = {}): Promise<void> {
    const record: LastExit = {
      ...(crashed ? { crashed: true } : {}),
      ...(exit?.oomKilled ? { oomKilled: true } : {}),
      ...extra,
      code: exit ? exit.code : null,
      reason:
        failure ??
        (exit
          ? exit.oomKilled
            ? "workload killed by the out-of-memory killer"
            : exit.signal
              ? `workload killed by ${exit.signal}${exit.escalated ? " after the grace period" : ""}`
              : `workload exited with ${exit.code}`
          : `VM ended: ${vmExit?.reason ?? "unknown"}`),
      endedAt: new Date().toISOString(),
      timings: this.timings,
    };
    await writeJsonAtomic(this.paths.lastExit, record);
  }
}
