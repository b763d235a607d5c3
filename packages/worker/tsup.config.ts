import { createRequire } from "node:module";
import { dirname, join } from "node:path";
import { defineConfig } from "tsup";

// yaml's ES module build (the package's `default` export condition; `node` gets its ~40-file CommonJS build,
// which esbuild cannot bundle into ESM: it requires "process"). Same source, same behaviour: the two builds differ
// only in the YAML 1.1 !!binary tag's Buffer use and a debug log switch.
const yamlEsm = join(dirname(createRequire(import.meta.url).resolve("yaml/package.json")), "browser/index.js");

export default defineConfig({
  // supervisor: one VM's supervisor process (spawned by start; loads neither the CLI nor commander).
  // wasm-runner and wasm-guest are the WASM tier's runner process and its worker thread: separate entries that
  // import only Node builtins, so they load under the permission model with a narrow fs read list.
  entry: { index: "src/index.ts", cli: "src/cli.ts", supervisor: "src/supervisor/main.ts", "wasm-runner": "src/wasm/runner-main.ts", "wasm-guest": "src/wasm/guest.ts", "wasm-engine-import": "src/wasm/engine-import.ts" },
  format: ["esm"],
  dts: { entry: "src/index.ts" },
  target: "node24",
  platform: "node",
  sourcemap: true,
  clean: true,
  // An optional dependency is not external by default: loaded at run time from node_modules, never bundled.
  external: ["@bytecodealliance/jco"],
  // yaml is bundled: `start` reads iii.workers.yaml before its supervisor gets `go`, and loading the package's
  // CommonJS files one by one cost it 50-110 ms (bundled: ~10 ms).
  noExternal: ["yaml"],
  esbuildPlugins: [{ name: "yaml-esm", setup: (build) => build.onResolve({ filter: /^yaml$/ }, () => ({ path: yamlEsm })) }],
});
