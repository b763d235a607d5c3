#!/usr/bin/env node
// `node bench/density/run.mjs [options]`: runs bench/density/main.ts (see its header for the options).
import { fileURLToPath } from "node:url";
import { runTs } from "../run-ts.mjs";

await runTs(fileURLToPath(new URL("./main.ts", import.meta.url)));
