#!/usr/bin/env node
import { writeSync } from "node:fs";
import { enableSafeCompileCache } from "./host/compile-cache.js";

// V8's compile cache (on disk, keyed by file content) before anything else loads: commander and the CLI's own
// chunks compile once per install instead of on every run. In a private directory, never Node's default under
// $TMPDIR (another local user could plant code there); the processes this one starts inherit the choice.
enableSafeCompileCache();

// A reader that went away (`iii-worker list | head -1`, `logs -f | head`) ends the CLI quietly with 141, the status
// of a process killed by SIGPIPE, as a shell pipeline expects, instead of an unhandled EPIPE stack. A command
// that owns the case (exec stops its remote command first) has its own listener, and then this one stands back.
// Any other failure to write the output (`list > /dev/full`: ENOSPC, EIO) is one line on stderr, if stderr can
// take it, and status 1, instead of an uncaught exception's stack: the output is lost, and the exit says so
// (an exec's attachment closes with the process, which ends its command).
for (const stream of [process.stdout, process.stderr]) {
  stream.on("error", (error: NodeJS.ErrnoException) => {
    if (error.code === "EPIPE" || error.code === "ERR_STREAM_DESTROYED") {
      if (stream.listenerCount("error") === 1) process.exit(141);
      return;
    }
    if (stream === process.stdout) {
      const code = error.code && /^E[A-Z0-9]+$/.test(error.code) ? error.code : "Internal";
      try {
        writeSync(2, `iii-worker: cannot write the output to stdout: ${error.message.replace(/\s*\n\s*/g, " ")} [${code}]\n`);
      } catch {
        // stderr is gone too: the status is all that is left
      }
    }
    process.exit(1);
  });
}

// `start <name>`: the worker's supervisor is spawned (in standby) first, so that its start-up overlaps this
// process's own (cli/early-standby.ts); one nobody claimed ends with the CLI.
const argv = process.argv.slice(2);
const { spawnEarlyStandby, abortEarlyStandby } = await import("./cli/early-standby.js");
await spawnEarlyStandby(argv);
try {
  const { runCli } = await import("./cli/program.js");
  process.exitCode = await runCli(argv);
} finally {
  abortEarlyStandby();
}
