import { Command } from "commander";

/** `iii-worker __wasm-run <config>` (hidden): the runner process of one WASM worker. */
export function registerWasmRun(program: Command): void {
  program.addCommand(
    new Command("__wasm-run").argument("<config>", "the worker's WASI_CONFIG file").action(async (config: string) => {
      const { runWasmCli } = await import("../../wasm/cli.js");
      process.exitCode = await runWasmCli(config);
    }),
    { hidden: true },
  );
}
