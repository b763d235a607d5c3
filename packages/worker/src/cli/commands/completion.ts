import type { Command } from "commander";

/** `iii-worker completion`: prints a shell completion script. */
export function registerCompletion(program: Command): void {
  program
    .command("completion")
    .description("print a shell completion script: bash (source <(iii-worker completion bash)) or zsh")
    .argument("<shell>", "bash or zsh")
    .action(async (shell: string) => {
      const { completionScript } = await import("../completion.js");
      process.stdout.write(completionScript(shell, program));
    });
}
