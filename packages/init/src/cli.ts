#!/usr/bin/env node
// Entry of the init binary for development (dist/cli.js). `iii-init` with no
// arguments is PID 1; the helper mode is how init gives tty execs a
// controlling terminal. dist/init.krun (scripts/build-sea.mjs) bundles this same file.
import { main } from "./entry.js";

main();
