import { defineConfig } from "tsup";

export default defineConfig({
  entry: ["src/index.ts", "src/cli.ts"],
  format: ["esm"],
  dts: { entry: "src/index.ts" },
  target: "node24",
  platform: "node",
  sourcemap: true,
  // Keep the single executable and its runtime (build:sea) across plain rebuilds.
  clean: ["!init.krun", "!iii-runtime/**", "!sea/**"],
});
