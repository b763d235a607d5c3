import type { Command } from "commander";

/** `iii-worker doctor`: reports what this host can run. */
export function registerDoctor(program: Command): void {
  program
    .command("doctor")
    .description("report what this host can do: accel (KVM/TCG), QEMU, virtiofsd, FUSE, TUN, firmware, guest init, III_HOME")
    .option("--json", "machine-readable output")
    .action(async (opts) => {
      const { runDoctor } = await import("../../doctor.js");
      const report = await runDoctor();
      const { terminalJson, terminalSafeLine } = await import("../../util/terminal-safe.js");
      if (opts.json) {
        console.log(terminalJson(report, 2));
      } else {
        const mark = { ok: "ok  ", warn: "warn", fail: "FAIL" } as const;
        for (const c of report.checks) console.log(`${mark[c.verdict]}  ${c.name}: ${terminalSafeLine(c.detail)}`);
        console.log(report.canRunVm ? `verdict: VMs can run here (accel ${report.accel})` : "verdict: VMs cannot run here");
        console.log(report.canRunWasm ? "verdict: WASM workers can run here" : "verdict: WASM workers cannot run here");
      }
      if (!report.canRunVm) process.exitCode = 1;
    });
}
