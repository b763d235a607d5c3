import { defineConfig } from "tsup";

// The host side (dist/index.js). The guest init, dist/init.krun, is `build:static` (scripts/build-static.mjs).
export default defineConfig({
  entry: ["src/index.ts"],
  format: ["esm"],
  dts: { entry: "src/index.ts" },
  target: "node24",
  platform: "node",
  sourcemap: true,
  // Keep the guest init and its build's intermediate files (build:static) across plain rebuilds.
  clean: ["!init.krun", "!static/**"],
});
