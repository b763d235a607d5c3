import type { Command } from "commander";

/** `iii-worker images`: lists cached images, their size and the workers using them. */
export function registerImages(program: Command): void {
  program
    .command("images")
    .description("list cached images, their size and the workers using them")
    .option("--json", "machine-readable output")
    .action(async (opts: { json?: boolean }) => (await import("./images-run.js")).imagesCommand(opts));
}
