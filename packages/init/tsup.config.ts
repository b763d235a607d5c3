import { defineConfig } from "tsup";

export default defineConfig({
  entry: ["src/index.ts", "src/cli.ts"],
  format: ["esm"],
  dts: { entry: "src/index.ts" },
  target: "node24",
  platform: "node",
  sourcemap: true,
  // Keep the single executables and the SEA runtime (build:sea, build:static) across plain rebuilds.
  clean: ["!init.krun", "!iii-runtime/**", "!sea/**", "!init-static", "!static/**"],
});
