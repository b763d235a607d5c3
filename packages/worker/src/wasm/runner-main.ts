import { wasmRunnerMain } from "./runner.js";

await wasmRunnerMain(process.argv.slice(2));
