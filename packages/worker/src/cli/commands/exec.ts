import type { Command } from "commander";
import { IiiError } from "../../errors.js";
import { collect } from "../options.js";

/** `iii-worker exec`: runs a command in a running worker. */
export function registerExec(program: Command): void {
  program
    .command("exec")
    .description("run a command inside a running worker; exits with the command's exit code")
    .argument("<name>")
    .argument("<command...>", "the command and its arguments (after --)")
    .option("-i, --interactive", "keep stdin open and send it to the command")
    .option("-t, --tty", "allocate a pseudo-terminal (its size follows this terminal)")
    .option("-e, --env <KEY=VALUE>", "environment variable (repeatable)", collect)
    .option("-w, --workdir <dir>", "working directory in the guest")
    .option("-u, --user <user>", "user (name or uid[:gid])")
    .option("--timeout <seconds>", "SIGTERM then SIGKILL after this many seconds; 0 (the default) disables")
    .action(async (name: string, command: string[], opts) => {
      // A running VM's record says what it is; the state file (YAML) is read only when there is no VM record
      // (exec then fails anyway) or a WASM runner's, keeping it off the path of the common case.
      const { readVmRecord } = await import("../../state/vm-record.js");
      const record = await readVmRecord(name);
      let wasm = record?.vmm === "wasm";
      if (!record) {
        const { loadWorkersFile } = await import("../../state/workers-file.js");
        const { workersFilePath } = await import("../../paths.js");
        const { isWasmImage } = await import("../../state/model.js");
        const file = await loadWorkersFile(workersFilePath()).catch(() => undefined);
        const spec = file && Object.hasOwn(file.workers, name) ? file.workers[name] : undefined;
        wasm = spec !== undefined && isWasmImage(spec.image);
      }
      if (wasm) {
        throw new IiiError("NotApplicable", `exec does not apply to WASM worker "${name}": it is one WebAssembly instance, with no shell or processes to run commands in`);
      }
      const { runExecCommand } = await import("./exec-run.js");
      process.exitCode = await runExecCommand(name, command, opts);
    });
}
