#!/usr/bin/env node
// `node bench/net-vm/run.mjs [--rounds N] [--seconds S] [--pings N]`: runs bench/net-vm/main.ts (see its header).
import { fileURLToPath } from "node:url";
import { runTs } from "../run-ts.mjs";

await runTs(fileURLToPath(new URL("./main.ts", import.meta.url)));
