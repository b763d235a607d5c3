// The init binary's entry (dist/cli.js and dist/init.krun). Nothing runs at
// import time. (A V8 startup snapshot of this bundle was tried: 80 ms instead
// of 40 ms to --version natively and 7 MB larger, so the SEA uses code cache.)

import { INIT_VERSION, runInit } from "./guest/main.js";
import { PTY_HELPER_MODE, runPtyHelper } from "./guest/pty.js";
import { ExitCode } from "./errors.js";

export function main(): void {
  const bootEnv = { ...process.env };
  // Blocking reads of the virtio-serial port sit in the threadpool: keep room
  // for file I/O beside them. Must be set before the first threadpool job.
  process.env.UV_THREADPOOL_SIZE ??= "8";

  const args = process.argv.slice(2).filter((a) => a !== process.execPath);
  if (args[0] === PTY_HELPER_MODE) {
    runPtyHelper(args[1] ?? "");
  } else if ((args[0] === "--help" || args[0] === "-h") && process.pid !== 1) {
    process.stdout.write(
      "usage: iii-init            (as PID 1 of an iii worker VM; configured by the III_* guest contract)\n" +
        "       iii-init --version\n" +
        "Outside a VM it runs in a PID namespace or with III_INIT_NO_REBOOT=1; see the @iii/init README.\n",
    );
  } else if (args[0] === "--version") {
    process.stdout.write(`iii-init ${INIT_VERSION}\n`);
  } else if (args[0]?.startsWith("__")) {
    process.stderr.write(`iii-init: error: unknown helper mode ${args[0]} (exit ${ExitCode.InitUsage})\n`);
    process.exit(ExitCode.InitUsage);
  } else {
    // PID 1 must not die of a stray exception (the kernel would panic and the
    // workload's status would be lost): report it and keep supervising.
    process.on("uncaughtException", (err) => process.stderr.write(`iii-init: internal error (continuing): ${err.stack ?? err}\n`));
    process.on("unhandledRejection", (err) => process.stderr.write(`iii-init: internal error (continuing): ${(err as Error)?.stack ?? err}\n`));
    // A console that went away must not take init down with EPIPE.
    process.stdout.on("error", () => {});
    process.stderr.on("error", () => {});
    // The kernel hands unknown cmdline words to init as arguments: not ours to reject.
    void runInit(bootEnv);
  }
}
