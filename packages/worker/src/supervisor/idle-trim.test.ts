import { afterEach, beforeEach, describe, expect, it, vi } from "vitest";
import { collectGarbage, trimWhenIdle, type EventLoopSample } from "./idle-trim.js";

/** A loop whose every tick is as busy as `state.busy` says. */
function loop(state: { busy: boolean }): (previous?: EventLoopSample) => EventLoopSample {
  return (previous) => ({ idle: 0, active: 0, utilization: previous && state.busy ? 0.5 : 0 });
}

describe("trimWhenIdle", () => {
  // The clock is the test's: each tick is exactly one interval, whatever the host's load.
  beforeEach(() => vi.useFakeTimers());
  afterEach(() => vi.useRealTimers());
  const sleep = (ms: number) => vi.advanceTimersByTimeAsync(ms);

  it("trims once when the loop goes idle, not again while it stays idle, and again after a busy period", async () => {
    const state = { busy: true };
    let trims = 0;
    const stop = trimWhenIdle({ trim: async () => void trims++, everyMs: 10, utilization: loop(state) });
    try {
      await sleep(80);
      expect(trims, "a busy loop is left alone").toBe(0);
      state.busy = false;
      await sleep(100);
      expect(trims, "one trim per busy period, not one per idle tick").toBe(1);
      state.busy = true;
      await sleep(50);
      state.busy = false;
      await sleep(80);
      expect(trims).toBe(2);
    } finally {
      stop();
    }
  });

  it("a trim that fails is reported and the next busy period trims again", async () => {
    const state = { busy: false };
    const errors: string[] = [];
    let calls = 0;
    const stop = trimWhenIdle({
      trim: async () => {
        calls++;
        throw new Error("the FUSE server is not running");
      },
      everyMs: 10,
      utilization: loop(state),
      onError: (error) => errors.push(error.message),
    });
    try {
      await sleep(80);
      expect(errors).toEqual(["the FUSE server is not running"]);
      state.busy = true;
      await sleep(40);
      state.busy = false;
      await sleep(80);
      expect(calls).toBe(2);
    } finally {
      stop();
    }
  });

  it("stops for good when its stop function is called", async () => {
    let trims = 0;
    trimWhenIdle({ trim: async () => void trims++, everyMs: 10, utilization: loop({ busy: false }) })();
    await sleep(60);
    expect(trims).toBe(0);
  });
});

describe("collectGarbage", () => {
  it("gives back a heap's garbage in a process started without --expose-gc", () => {
    expect(process.execArgv.join(" ")).not.toContain("expose-gc");
    // ~40 MB of short-lived strings, dropped: a full GC leaves the heap well below where it grew to
    let garbage: string[] | undefined = Array.from({ length: 400_000 }, (_, i) => `${i}`.repeat(20));
    const grown = process.memoryUsage().heapUsed;
    garbage = undefined;
    collectGarbage();
    expect(garbage).toBeUndefined();
    expect(process.memoryUsage().heapUsed).toBeLessThan(grown - 20_000_000);
  });
});
