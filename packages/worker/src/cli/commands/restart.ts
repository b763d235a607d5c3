import type { Command } from "commander";
import { forEachWorker, requireWorkers } from "../for-each-worker.js";
import { DEFAULT_ENGINE_URL, DEFAULT_TIMEOUT_SECONDS, parseSeconds } from "../options.js";
import { checkEngineUrl, startOne } from "./start.js";
import { stopOne } from "./stop.js";
import { StartInterrupt } from "../start-interrupt.js";

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
      // Ctrl-C or SIGTERM: the start half is cancelled as `start`'s is, after the stop half has finished.
      const interrupt = new StartInterrupt(names, undefined);
      try {
        await forEachWorker(names, async (name) => {
          // Registered before any await: a signal from here on finds the stop half to wait for.
          const [engineUrl, stopped] = await interrupt.stopFirst(name, async () => {
            const url: string = opts.engineUrl ?? (await lastEngineUrl(name)) ?? DEFAULT_ENGINE_URL;
            return [url, await stopOne(name, graceMs)] as const;
          });
          const started = await interrupt.run(name, (hooks) => startOne(name, { engineUrl, bootTimeout: opts.bootTimeout, pull: "missing" }, undefined, hooks));
          return `${stopped}\n${started}`;
        });
      } finally {
        interrupt.dispose();
      }
    });
}
