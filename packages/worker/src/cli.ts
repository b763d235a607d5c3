#!/usr/bin/env node
import { enableCompileCache } from "node:module";

// V8's compile cache (on disk, keyed by file content) before anything else loads: commander and the CLI's own
// chunks compile once per install instead of on every run.
enableCompileCache?.();

const { runCli } = await import("./cli/program.js");
process.exitCode = await runCli(process.argv.slice(2));
