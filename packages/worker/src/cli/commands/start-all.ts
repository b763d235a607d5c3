import type { Command } from "commander";
import { DEFAULT_ENGINE_URL } from "../options.js";

/** `iii-worker start-all`: starts every worker of ./iii.workers.yaml. */
export function registerStartAll(program: Command): void {
  program
    .command("start-all")
    .description("start every worker in iii.workers.yaml (used by the engine)")
    .option("--engine-url <url>", "engine URL", DEFAULT_ENGINE_URL)
    .action(async (opts) => {
      const { loadWorkersFile } = await import("../../state/workers-file.js");
      const { workersFilePath } = await import("../../paths.js");
      const { startWorker } = await import("../../lifecycle.js");
      const file = await loadWorkersFile(workersFilePath());
      const names = Object.keys(file.workers).sort();
      const { terminalSafeLine } = await import("../../util/terminal-safe.js");
      const results = await Promise.allSettled(names.map((name) => startWorker(name, { engineUrl: opts.engineUrl })));
      results.forEach((r, i) =>
        console.error(r.status === "fulfilled" ? `started ${names[i]}` : `failed to start ${names[i]}: ${terminalSafeLine((r.reason as Error).message)}`),
      );
      if (results.some((r) => r.status === "rejected")) process.exitCode = 1;
    });
}
