#!/usr/bin/env node
// `node bench/smp-boot/run.mjs [--rounds N] [--vcpus N] [--load]`: runs bench/smp-boot/main.ts (see its header).
import { fileURLToPath } from "node:url";
import { runTs } from "../run-ts.mjs";

await runTs(fileURLToPath(new URL("./main.ts", import.meta.url)));
