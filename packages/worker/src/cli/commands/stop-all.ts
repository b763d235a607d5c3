import type { Command } from "commander";
import { parseSeconds } from "../options.js";

/** `iii-worker stop-all`: stops every running worker of ./iii.workers.yaml. */
export function registerStopAll(program: Command): void {
  program
    .command("stop-all")
    .description("stop every running worker of iii.workers.yaml (used by the engine)")
    .option("--timeout <seconds>", "grace period", "5")
    .action(async (opts) => {
      const graceMs = parseSeconds(opts.timeout, "--timeout") * 1000;
      const { loadWorkersFile } = await import("../../state/workers-file.js");
      const { workersFilePath } = await import("../../paths.js");
      const { stopWorkerAfterStart } = await import("../../lifecycle.js");
      const file = await loadWorkersFile(workersFilePath());
      const names = Object.keys(file.workers).sort();
      const { terminalSafeLine } = await import("../../util/terminal-safe.js");
      const results = await Promise.allSettled(names.map((name) => stopWorkerAfterStart(name, { graceMs })));
      results.forEach((r, i) => {
        if (r.status === "rejected") console.error(`failed to stop ${names[i]}: ${terminalSafeLine((r.reason as Error).message)}`);
        else if (r.value !== "not-running") console.error(`stopped ${names[i]}`);
      });
      if (results.some((r) => r.status === "rejected")) process.exitCode = 1;
    });
}
