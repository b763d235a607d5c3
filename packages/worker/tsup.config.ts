import { defineConfig } from "tsup";

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
});
