// Builds greet.wasm, the example component, with jco componentize. preview2-shim 0.26 starts with no preopens,
// and jco 1.35's wasm-tools reads the WIT through it, so the host's `/` is preopened for the build first.
import { createRequire } from "node:module";
import { fileURLToPath } from "node:url";
import { dirname, join } from "node:path";

const here = dirname(fileURLToPath(import.meta.url));
const workerPkg = join(here, "../../packages/worker/package.json");
const jcoPkg = createRequire(workerPkg).resolve("@bytecodealliance/jco/package.json".replace("/package.json", ""));
const jcoRequire = createRequire(jcoPkg);
const fs = await import(jcoRequire.resolve("@bytecodealliance/preview2-shim/filesystem"));
fs._setPreopens({ "/": "/" });
const out = process.argv[2] ?? join(here, "greet.wasm");
process.argv = [process.argv[0], "jco", "componentize", join(here, "src/greet.js"), "--wit", join(here, "../../packages/worker/wit/iii-worker.wit"), "--world-name", "wasm-worker", "--disable", "all", "-o", out];
await import(join(dirname(jcoPkg), "jco.js"));
