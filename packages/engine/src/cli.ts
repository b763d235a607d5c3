#!/usr/bin/env node
import pkg from "../package.json" with { type: "json" };
import { runWorkerInProcess, WorkerNotFoundError } from "./run-worker.js";

// No compile cache of the shim's own: iii-worker's entry, loaded below in this process, turns on one in a private
// directory (never Node's default $TMPDIR/node-compile-cache, where another local user can plant code).

const USAGE = `usage: iii worker <command> [args...]
       iii --version

The iii engine shim. Every argument after "worker" is handed verbatim to iii-worker
(found through III_WORKER_BIN, the installed @iii/worker package, or PATH).
Run "iii worker --help" for the worker commands.`;

async function main(argv: string[]): Promise<number> {
  const [command, ...rest] = argv;
  if (command === "--version" || command === "-V") {
    console.log(pkg.version);
    return 0;
  }
  if (command === undefined || command === "--help" || command === "-h" || command === "help") {
    console.log(USAGE);
    return command === undefined ? 2 : 0;
  }
  if (command !== "worker") {
    console.error(`iii: unknown command "${command}" (only "iii worker ..." is handled by this shim)`);
    return 2;
  }
  try {
    return await runWorkerInProcess(rest);
  } catch (error) {
    if (error instanceof WorkerNotFoundError) {
      console.error(`iii: ${error.message}`);
      return 127;
    }
    console.error(`iii: could not run iii-worker: ${(error as Error).message}`);
    return 126;
  }
}

process.exitCode = await main(process.argv.slice(2));
