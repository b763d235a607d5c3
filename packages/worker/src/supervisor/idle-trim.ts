import { performance } from "node:perf_hooks";
import { setFlagsFromString } from "node:v8";
import { runInNewContext } from "node:vm";

/** How often the supervisor looks at how busy its event loop was. */
export const IDLE_TRIM_EVERY_MS = 2_000;
/** Below this share of a tick spent running JS and callbacks, the loop counts as idle. */
export const IDLE_TRIM_BUSY_BELOW = 0.02;

export interface IdleTrimOptions {
  /** Full GCs to run once idle: the supervisor's own, its FUSE servers' (through their channel). */
  trim: () => Promise<void>;
  everyMs?: number;
  busyBelow?: number;
  /** The event-loop utilization since `previous` (perf_hooks' by default; a test passes its own). */
  utilization?: (previous?: EventLoopSample) => EventLoopSample;
  onError?: (error: Error) => void;
}

export interface EventLoopSample {
  idle: number;
  active: number;
  utilization: number;
}

/**
 * Gives back the heap an idle worker's Node processes no longer use. V8 grows its heap while the boot runs (module
 * evaluation, the mount, the first frames) and, without an idle notification from the embedder (Node sends none),
 * keeps it committed: an idle supervisor held 19 MB of heap with 9 in use, its FUSE server 11 with 7, until the
 * next full GC, which an idle process never reaches by allocating. So after every busy period, once a tick of
 * the loop was idle, one full GC runs in each; an idle worker pays one per busy period, never one per tick (with
 * the GCs V8's memory reducer adds ~8 s after it, ~60 ms of the supervisor's CPU and ~40 of a FUSE server's here,
 * once after the boot: bench:density). Returns the stop function, for the run's resource owner.
 */
export function trimWhenIdle(options: IdleTrimOptions): () => void {
  const { trim, everyMs = IDLE_TRIM_EVERY_MS, busyBelow = IDLE_TRIM_BUSY_BELOW } = options;
  const utilization = options.utilization ?? ((previous?: EventLoopSample) => performance.eventLoopUtilization(previous));
  let last = utilization();
  let trimmedSinceBusy = false;
  let running = false;
  const timer = setInterval(() => {
    const now = utilization();
    const busy = utilization(last).utilization >= busyBelow;
    last = now;
    if (busy) {
      trimmedSinceBusy = false;
      return;
    }
    if (trimmedSinceBusy || running) return;
    running = true;
    trim()
      .catch((error: Error) => options.onError?.(error))
      .finally(() => {
        running = false;
        trimmedSinceBusy = true;
        // Sampled when the trim ends: the GC's own time does not count as the next tick's work.
        last = utilization();
      });
  }, everyMs);
  timer.unref();
  return () => clearInterval(timer);
}

let gcFn: (() => void) | undefined;

/** A full, compacting GC of this process's heap (gc exposed at run time when node was started without --expose-gc). */
export function collectGarbage(): void {
  if (!gcFn) {
    const exposed = (globalThis as { gc?: () => void }).gc;
    if (exposed) gcFn = exposed;
    else {
      setFlagsFromString("--expose-gc");
      gcFn = runInNewContext("gc") as () => void;
    }
  }
  gcFn();
}
