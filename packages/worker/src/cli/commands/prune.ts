import type { Command } from "commander";

/** `iii-worker prune`: removes cached images no worker of the project, nor any started worker of another, references. */
export function registerPrune(program: Command): void {
  program
    .command("prune")
    .description("remove cached images no worker in ./iii.workers.yaml references, keeping those of workers started in other projects")
    .option("--dry-run", "list what would be removed")
    .action(async (opts: { dryRun?: boolean }) => (await import("./images-run.js")).pruneCommand(opts));
}
