import type { Command } from "commander";
import { requireWorkers } from "../for-each-worker.js";

/** `iii-worker inspect`: prints workers as JSON. */
export function registerInspect(program: Command): void {
  program
    .command("inspect")
    .description("print workers as JSON: spec, state (status, pid, start time), last exit, paths")
    .argument("<name...>")
    .action(async (names: string[]) => {
      await requireWorkers(names);
      const { inspectWorkers } = await import("./list-run.js");
      const { terminalJson } = await import("../../util/terminal-safe.js");
      console.log(terminalJson(await inspectWorkers(names), 2));
    });
}
