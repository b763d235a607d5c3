import type { Command } from "commander";
import { forEachWorker, requireWorkers } from "../for-each-worker.js";
import { DEFAULT_ENGINE_URL, DEFAULT_TIMEOUT_SECONDS, parseSeconds } from "../options.js";
import { checkEngineUrl, startOne } from "./start.js";
import { stopOne } from "./stop.js";

/** `iii-worker restart`: stops and starts workers again. */
export function registerRestart(program: Command): void {
  program
    .command("restart")
    .description("stop workers (if running) and start them again, with the engine URL of their last start")
    .argument("<name...>")
    .option("--timeout <seconds>", "grace period before the workload is killed", DEFAULT_TIMEOUT_SECONDS)
    .option("--engine-url <url>", "engine URL (default: the one the worker was last started with, else the local engine)")
    .option("--boot-timeout <seconds>", "how long to wait for READY", "120")
    .action(async (names: string[], opts) => {
      const graceMs = parseSeconds(opts.timeout, "--timeout") * 1000;
      parseSeconds(opts.bootTimeout, "--boot-timeout");
      if (opts.engineUrl !== undefined) checkEngineUrl(opts.engineUrl);
      await requireWorkers(names);
      const { lastEngineUrl } = await import("./list-run.js");
      await forEachWorker(names, async (name) => {
        const engineUrl = opts.engineUrl ?? (await lastEngineUrl(name)) ?? DEFAULT_ENGINE_URL;
        const stopped = await stopOne(name, graceMs);
        return `${stopped}\n${await startOne(name, { engineUrl, bootTimeout: opts.bootTimeout, pull: "missing" })}`;
      });
    });
}
