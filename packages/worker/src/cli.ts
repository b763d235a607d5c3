#!/usr/bin/env node
import { enableSafeCompileCache } from "./host/compile-cache.js";

// V8's compile cache (on disk, keyed by file content) before anything else loads: commander and the CLI's own
// chunks compile once per install instead of on every run. In a private directory, never Node's default under
// $TMPDIR (another local user could plant code there); the processes this one starts inherit the choice.
enableSafeCompileCache();

// A reader that went away (`iii-worker list | head -1`, `logs -f | head`) ends the CLI quietly with 141, the status
// of a process killed by SIGPIPE, as a shell pipeline expects, instead of an unhandled EPIPE stack. A command
// that owns the case (exec stops its remote command first) has its own listener, and then this one stands back.
for (const stream of [process.stdout, process.stderr]) {
  stream.on("error", (error: NodeJS.ErrnoException) => {
    if (error.code !== "EPIPE" && error.code !== "ERR_STREAM_DESTROYED") throw error;
    if (stream.listenerCount("error") === 1) process.exit(141);
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
