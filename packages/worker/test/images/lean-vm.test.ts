import { setFlagsFromString } from "node:v8";
import { describe, expect, it } from "vitest";
import { leanVm } from "../../src/images/lean-vm.js";

setFlagsFromString("--allow-natives-syntax");
// %-calls parse only with the flag on, so these are compiled after it was set.
const status = new Function("f", "return %GetOptimizationStatus(f)") as (f: () => number) => number;
const optimizeNow = new Function("f", "%PrepareFunctionForOptimization(f); f(); f(); %OptimizeFunctionOnNextCall(f); f();") as (f: () => number) => void;
/** V8's kOptimized status bit. */
const OPTIMIZED = 1 << 4;

/** A fresh function each time, so an earlier optimization does not count. */
const hot = () => new Function("let s = 0; for (let i = 0; i < 100; i++) s += i; return s;") as () => number;

describe("leanVm: the optimizing compilers are off during a pull and back after it", () => {
  it("no function is optimized while a pull holds the lean settings; the last release restores them", () => {
    const before = hot();
    optimizeNow(before);
    expect(status(before) & OPTIMIZED).toBe(OPTIMIZED);

    const releaseA = leanVm();
    const releaseB = leanVm(); // a second pull at the same time
    const during = hot();
    optimizeNow(during);
    expect(status(during) & OPTIMIZED).toBe(0);

    releaseA();
    releaseA(); // a second call is a no-op, it does not release B's hold
    const stillLean = hot();
    optimizeNow(stillLean);
    expect(status(stillLean) & OPTIMIZED).toBe(0);

    releaseB();
    const after = hot();
    optimizeNow(after);
    expect(status(after) & OPTIMIZED).toBe(OPTIMIZED);
  });
});
