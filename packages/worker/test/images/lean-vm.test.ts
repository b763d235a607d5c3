import { spawnSync } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { stripTypeScriptTypes } from "node:module";
import { tmpdir } from "node:os";
import { join } from "node:path";
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

describe("leanVm in a process started without a JIT", () => {
  it("under --jitless a pull's settings change nothing, so the process survives hot code after the pull", () => {
    // Node's own type stripping needs WebAssembly, which --jitless lacks: strip here, run plain JS there.
    const dir = mkdtempSync(join(tmpdir(), "iii-lean-vm-"));
    const module = join(dir, "lean-vm.mjs");
    writeFileSync(module, stripTypeScriptTypes(readFileSync(new URL("../../src/images/lean-vm.ts", import.meta.url), "utf8")));
    const script = `import { leanVm } from ${JSON.stringify(module)};
leanVm()();
let s = 0;
for (let r = 0; r < 200; r++) s += new Function("let t = 0; for (let i = 0; i < 2000; i++) t += i; return t;")();
console.log("alive", s);`;
    for (const flag of ["--jitless", "--lite-mode"]) {
      const run = spawnSync(process.execPath, [flag, "--input-type=module", "-e", script], { encoding: "utf8", timeout: 30_000 });
      expect({ flag, status: run.status, signal: run.signal, out: run.stdout.trim() }).toEqual({ flag, status: 0, signal: null, out: `alive ${200 * 1999000}` });
    }
    rmSync(dir, { recursive: true, force: true });
  });
});
