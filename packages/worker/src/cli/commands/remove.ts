import type { Command } from "commander";
import { DEFAULT_TIMEOUT_SECONDS, parseSeconds } from "../options.js";

/** `iii-worker remove`: removes a worker and its data. */
export function registerRemove(program: Command): void {
  program
    .command("remove")
    .alias("rm")
    .description("remove a worker from iii.workers.yaml and delete its data (writable layer, logs); refuses a running worker")
    .argument("<name>")
    .option("-f, --force", "stop the worker first if it is running")
    .option("--keep-data", "keep its managed directory (writable layer, logs)")
    .option("--timeout <seconds>", "with --force: grace period before the workload is killed", DEFAULT_TIMEOUT_SECONDS)
    .action(async (name: string, opts) => {
      const graceMs = parseSeconds(opts.timeout, "--timeout") * 1000;
      const { getWorker, removeWorker } = await import("../../workers.js");
      const { removeWorkerData } = await import("../../lifecycle.js");
      const { holdWorkerOperation } = await import("../../state/worker-op-lock.js");
      await getWorker(name);
      // before any data goes: a file that cannot be written left the worker listed with its data deleted
      const { assertWorkersFileWritable } = await import("../../state/workers-file.js");
      const { workersFilePath } = await import("../../paths.js");
      await assertWorkersFileWritable(workersFilePath());
      // Not while a `start` of it runs (it may still be pulling, before its supervisor shows it running).
      const operation = await holdWorkerOperation(name, "remove");
      try {
        await removeWorkerData(name, { force: !!opts.force, keepData: !!opts.keepData, graceMs });
        await removeWorker(name);
      } finally {
        await operation.release();
      }
      console.error(`removed worker ${name}`);
    });
}
