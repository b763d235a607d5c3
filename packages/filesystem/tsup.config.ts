import { defineConfig } from "tsup";

export default defineConfig({
  entry: ["src/index.ts", "src/cli.ts", "src/server.ts"],
  format: ["esm"],
  dts: { entry: "src/index.ts" },
  target: "node24",
  platform: "node",
  sourcemap: true,
  clean: true,
});
