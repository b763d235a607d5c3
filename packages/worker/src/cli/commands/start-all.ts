import type { Command } from "commander";
import { DEFAULT_ENGINE_URL } from "../options.js";

/** `iii-worker start-all`: starts every worker of ./iii.workers.yaml. */
export function registerStartAll(program: Command): void {
  program
    .command("start-all")
    .description("start every worker in iii.workers.yaml (used by the engine)")
    .option("--engine-url <url>", "engine URL", DEFAULT_ENGINE_URL)
    .action(async (opts) => {
      const { checkEngineUrl } = await import("./start.js");
      checkEngineUrl(opts.engineUrl);
      const { loadWorkersFile } = await import("../../state/workers-file.js");
      const { workersFilePath } = await import("../../paths.js");
      const { startWorker } = await import("../../lifecycle.js");
      const file = await loadWorkersFile(workersFilePath());
      const names = Object.keys(file.workers).sort();
      const { terminalSafeLine } = await import("../../util/terminal-safe.js");
      const { describeError } = await import("../../errors.js");
      // Ctrl-C or SIGTERM: every start under way is cancelled as `start`'s is (one line each, exit 130).
      const { StartInterrupt } = await import("../start-interrupt.js");
      const interrupt = new StartInterrupt(names, undefined);
      let results: PromiseSettledResult<unknown>[];
      try {
        results = await Promise.allSettled(names.map((name) => interrupt.run(name, (hooks) => startWorker(name, { engineUrl: opts.engineUrl, ...hooks }))));
      } finally {
        interrupt.dispose();
      }
      // a failure as every multi-worker command prints it (for-each-worker.ts): prefix, name, message, code
      let exitCode = 0;
      results.forEach((r, i) => {
        if (r.status === "fulfilled") return console.error(`started ${names[i]}`);
        const report = describeError(r.reason);
        console.error(`iii-worker: ${names[i]}: ${terminalSafeLine(report.message)} [${report.code}]`);
        if (exitCode === 0) exitCode = report.exitCode;
      });
      if (exitCode !== 0) process.exitCode = exitCode;
    });
}
