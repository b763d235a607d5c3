import { Command } from "commander";

/** `iii-worker __vm-boot <name> <project-dir>` (hidden): the supervisor process of one VM, spawned by `start`. */
export function registerVmBoot(program: Command): void {
  program.addCommand(
    new Command("__vm-boot").argument("<name>").argument("<project-dir>").action(async (name: string, projectDir: string) => {
      const { runSupervisor } = await import("../../supervisor/supervisor.js");
      // Everything the supervisor owned is released by now; do not let a stray handle keep it alive.
      process.exit(await runSupervisor(name, projectDir));
    }),
    { hidden: true },
  );
}
