#!/usr/bin/env node
// `node bench/wasm/run.mjs [--rounds N] [--invocations K] [--no-vm]`: runs bench/wasm/main.ts (see its header).
import { fileURLToPath } from "node:url";
import { runTs } from "../run-ts.mjs";

await runTs(fileURLToPath(new URL("./main.ts", import.meta.url)));
