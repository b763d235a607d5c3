import type { Command } from "commander";
import { forEachWorker, requireWorkers } from "../for-each-worker.js";
import { DEFAULT_TIMEOUT_SECONDS, parseSeconds } from "../options.js";

/** `iii-worker stop`: stops workers through their supervisors. */
export function registerStop(program: Command): void {
  program
    .command("stop")
    .description("stop workers: SIGTERM to the workload, then kill after the grace period")
    .argument("<name...>")
    .option("--timeout <seconds>", "grace period before the workload is killed", DEFAULT_TIMEOUT_SECONDS)
    .action(async (names: string[], opts) => {
      const graceMs = parseSeconds(opts.timeout, "--timeout") * 1000;
      await requireWorkers(names);
      await forEachWorker(names, (name) => stopOne(name, graceMs));
    });
}

export async function stopOne(name: string, graceMs: number): Promise<string> {
  const { stopWorkerAfterStart } = await import("../../lifecycle.js");
  // A start of it under way (no run recorded yet) is waited for, then stopped.
  const outcome = await stopWorkerAfterStart(name, { graceMs, onWait: () => console.error(`waiting for the start of ${name} under way, to stop it`) });
  return outcome === "stopped" ? `stopped ${name}` : outcome === "cleaned-crashed" ? `${name} had crashed; cleaned up` : `${name} is not running`;
}
