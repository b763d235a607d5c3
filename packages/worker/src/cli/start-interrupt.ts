import { setTimeout as sleep } from "node:timers/promises";
import type { StandbySupervisor } from "../launch/spawn.js";
import { ERROR_CODES } from "../errors.js";

/** The stop grace of an interrupted start: its workload has barely begun, if at all. */
const INTERRUPT_GRACE_MS = 2_000;
/** How long a spawned supervisor may take to record itself in vm.json (measured: tens of ms) before it can be stopped. */
const RECORD_WAIT_MS = 10_000;
/** The exit status of an interrupted start (either signal), as `dev`'s Ctrl-C. */
export const INTERRUPTED_EXIT = ERROR_CODES.Interrupted;

/**
 * Ctrl-C or SIGTERM while `start` waits for a VM: the start is cancelled instead of the CLI exiting while the VM
 * went on booting, `running` with nobody told (review-cliux-s17 #20). No supervisor is spawned after the signal
 * (lifecycle's signal, checked in the spawn's turn; an unused standby is released); one already spawned is
 * stopped through `iii worker stop`'s path (lifecycle.stopWorker, bounded: grace + its kill deadline) as soon as
 * vm.json names it. Then one line per worker and exit 130; the start's own outcome is never printed. Later
 * signals while this runs are noted once and otherwise ignored: the cancel is what ends the process.
 */
export class StartInterrupt {
  private readonly controller = new AbortController();
  private readonly spawned = new Set<string>();
  private readonly starts = new Map<string, { settled: boolean }>();
  /** `restart`'s stop of each worker before its start: a cancel waits for it (see stopFirst). */
  private readonly stops = new Map<string, Promise<{ failed?: string }>>();
  private cancelling: Promise<never> | undefined;
  private noted = false;
  private readonly onSignal = (signal: NodeJS.Signals): void => this.interrupt(signal);

  constructor(
    private readonly names: readonly string[],
    private readonly standby: StandbySupervisor | undefined,
    private readonly where: { env: NodeJS.ProcessEnv; cwd: string } = { env: process.env, cwd: process.cwd() },
  ) {
    process.on("SIGINT", this.onSignal);
    process.on("SIGTERM", this.onSignal);
  }

  /** Runs one worker's start with the hooks it needs; once interrupted, it never settles (the cancel exits). */
  async run<T>(name: string, start: (hooks: { signal: AbortSignal; onSupervisor: () => void }) => Promise<T>): Promise<T> {
    const state = { settled: false };
    this.starts.set(name, state);
    try {
      return await start({ signal: this.controller.signal, onSupervisor: () => this.spawned.add(name) });
    } finally {
      state.settled = true;
      if (this.cancelling) await this.cancelling;
    }
  }

  /**
   * `restart`'s first half. A signal meanwhile does not cut the stop short (the request may not have reached the
   * supervisor yet, and the old VM would run on after a line saying nothing runs): the cancel waits for it, then
   * no start follows (the aborted signal) and the line says what is left.
   */
  async stopFirst<T>(name: string, stop: () => Promise<T>): Promise<T> {
    const p = stop();
    this.stops.set(
      name,
      p.then(
        () => ({}),
        (error: Error) => ({ failed: error.message }),
      ),
    );
    return p;
  }

  dispose(): void {
    process.off("SIGINT", this.onSignal);
    process.off("SIGTERM", this.onSignal);
  }

  private interrupt(signal: NodeJS.Signals): void {
    if (this.cancelling) {
      if (!this.noted) process.stderr.write(`iii-worker: ${signal}: already stopping ${this.names.join(", ")}; waiting for it\n`);
      this.noted = true;
      return;
    }
    this.controller.abort(new Error(`interrupted by ${signal}`));
    // A standby not yet told `go` ends having created nothing; after `go` this does nothing.
    this.standby?.abort();
    this.cancelling = this.cancel();
  }

  private async cancel(): Promise<never> {
    const lines = await Promise.all(
      this.names.map(async (name) => {
        const interrupted = `iii-worker: ${this.commandOf(name)} of ${name} interrupted`;
        const stop = await this.stops.get(name);
        if (stop?.failed) return `${interrupted}; its stop failed: ${stop.failed} (run iii worker stop ${name}) [Interrupted]`;
        if (!this.spawned.has(name)) {
          return stop
            ? `${interrupted} before its start; the worker is stopped [Interrupted]`
            : `${interrupted} before its VM was started; nothing is running [Interrupted]`;
        }
        try {
          await this.stopStarting(name);
          return `${interrupted}; the worker was stopped [Interrupted]`;
        } catch (error) {
          return `${interrupted}; stopping it failed: ${(error as Error).message} (run iii worker stop ${name}) [Interrupted]`;
        }
      }),
    );
    process.stderr.write(`${lines.join("\n")}\n`);
    process.exit(INTERRUPTED_EXIT);
  }

  /** What the user ran for this worker, as the lines name it: a worker with a stop half is being restarted. */
  private commandOf(name: string): "restart" | "start" {
    return this.stops.has(name) ? "restart" : "start";
  }

  /** Stops a worker whose supervisor was spawned by this start, once vm.json names it (or the start ended). */
  private async stopStarting(name: string): Promise<void> {
    const { env, cwd } = this.where;
    // Loaded only when interrupted: every command's module graph includes this file (program.ts registers them all).
    const [{ isSameProcessAlive }, { awaitEndedSupervisor, stopWorker }, { readVmRecord }] = await Promise.all([
      import("../host/process-identity.js"),
      import("../lifecycle.js"),
      import("../state/vm-record.js"),
    ]);
    const deadline = Date.now() + RECORD_WAIT_MS;
    for (;;) {
      const record = await readVmRecord(name, env, cwd);
      if (record && isSameProcessAlive(record)) {
        await stopWorker(name, { graceMs: INTERRUPT_GRACE_MS, env, cwd });
        return;
      }
      // The start ended without a live supervisor (its boot failed): wait for it to have released everything.
      if (this.starts.get(name)?.settled || Date.now() > deadline) {
        await awaitEndedSupervisor(name, env, cwd);
        return;
      }
      await sleep(25);
    }
  }
}
