import { mkdtempSync, rmSync, writeFileSync, appendFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { consoleMark, consoleTextSince, kernelPanicSummary } from "./console-log.js";

// The console of the 2-vCPU boot that failed a CI run (a stale int3 under parallel TCG), shortened.
const CI_PANIC = `[    0.745622] smp: Brought up 1 node, 2 CPUs
[    1.047404] sched_clock: Marking stable (1033386592, 13147275)->(1056749365, -10215498)
[    1.101230] Oops: int3: 0000 [#1] SMP NOPTI
[    1.101305] CPU: 1 UID: 0 PID: 0 Comm: swapper/1 Not tainted 6.12.109 #1
[    1.101390] RIP: 0010:sched_clock_cpu+0x5/0x180
[    1.101399] Code: c1 dc 55 00 eb 9a 66 66 2e 0f 1f 84 00 00 00 00 00 0f 1f 40 00 90 90 90 90 <90> e8 b5
[    1.114681]  </TASK>
[    1.115080] ---[ end trace 0000000000000000 ]---
[    1.115095] Oops: int3: 0000 [#2] SMP NOPTI
[    1.115186] RIP: 0010:sched_clock_cpu+0x5/0x180
[    1.115429] Kernel panic - not syncing: Fatal exception in interrupt
[    4.251061] Shutting down cpus with NMI
[    4.252831] Kernel Offset: disabled
`;

describe("kernelPanicSummary", () => {
  it("names the first oops, where it was, and the panic's reason", () => {
    expect(kernelPanicSummary(CI_PANIC)).toBe("Oops: int3: 0000 [#1] SMP NOPTI at sched_clock_cpu+0x5/0x180; Kernel panic - not syncing: Fatal exception in interrupt");
  });

  it("a panic without an oops, a BUG, and a console without a panic", () => {
    expect(kernelPanicSummary("[    2.0] Kernel panic - not syncing: Attempted to kill init! exitcode=0x00000100\r\n")).toBe(
      "Kernel panic - not syncing: Attempted to kill init! exitcode=0x00000100",
    );
    expect(kernelPanicSummary("BUG: kernel NULL pointer dereference, address: 0000000000000008\nRIP: 0010:foo+0x1/0x2\nKernel panic - not syncing: Fatal exception\n")).toBe(
      "BUG: kernel NULL pointer dereference, address: 0000000000000008 at foo+0x1/0x2; Kernel panic - not syncing: Fatal exception",
    );
    // An oops the kernel survived is not a death; a workload printing the words is not the kernel's panic line.
    expect(kernelPanicSummary("[ 1.0] Oops: int3: 0000 [#1] SMP NOPTI\nRIP: 0010:x+0x1/0x2\nworkload: up\n")).toBeUndefined();
    expect(kernelPanicSummary("echo 'not Kernel panic - not syncing: x'\n")).toBeUndefined();
  });
});

describe("consoleTextSince", () => {
  const dir = mkdtempSync(join(tmpdir(), "iii-panic-"));
  afterAll(() => rmSync(dir, { recursive: true, force: true }));

  it("reads only what the log got since the mark: an earlier run's panic is not this run's", () => {
    const log = join(dir, "console.log");
    writeFileSync(log, CI_PANIC);
    const mark = consoleMark(log);
    appendFileSync(log, "[    0.5] smp: Brought up 1 node, 1 CPU\nworkload: up\n");
    expect(kernelPanicSummary(consoleTextSince(log, mark))).toBeUndefined();
    expect(consoleTextSince(log, mark)).toBe("[    0.5] smp: Brought up 1 node, 1 CPU\nworkload: up\n");
    expect(consoleTextSince(join(dir, "absent.log"), mark)).toBe("");
  });
});
