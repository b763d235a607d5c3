#!/usr/bin/env node
// Runs bench/exec/main.ts without a TS runtime: bundles it (and the sources it imports) with the esbuild
// that tsup ships, next to main.ts so that package imports (koffi, tar-stream) and import.meta.url-relative
// paths resolve exactly as from the sources; the bundle is removed afterwards.
import { createRequire } from "node:module";
import { dirname, join } from "node:path";
import { fileURLToPath, pathToFileURL } from "node:url";

const here = dirname(fileURLToPath(import.meta.url));
const pkg = join(here, "..", "..");
const require = createRequire(join(pkg, "package.json"));
const esbuild = createRequire(require.resolve("tsup"))("esbuild");
const outfile = join(here, `.main-${process.pid}.mjs`);
await esbuild.build({
  entryPoints: [join(here, "main.ts")],
  bundle: true,
  platform: "node",
  format: "esm",
  target: "node24",
  packages: "external",
  outfile,
  logLevel: "warning",
  banner: { js: "import { createRequire as __cr } from 'node:module'; const require = __cr(import.meta.url);" },
});
try {
  await import(pathToFileURL(outfile).href);
} finally {
  (await import("node:fs")).rmSync(outfile, { force: true });
}
