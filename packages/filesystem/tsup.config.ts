import { defineConfig } from "tsup";

export default defineConfig({
  // client: the parent's side of a child FUSE server (Node builtins only), for a parent that loads little code.
  entry: { index: "src/index.ts", cli: "src/cli.ts", server: "src/server.ts", client: "src/mount/client.ts" },
  format: ["esm"],
  dts: { entry: { index: "src/index.ts", client: "src/mount/client.ts" } },
  target: "node24",
  platform: "node",
  sourcemap: true,
  clean: true,
});
