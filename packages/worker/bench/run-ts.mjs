// Runs a TypeScript benchmark without a TS runtime: bundles it (and the sources it imports) with the esbuild
// that tsup ships, next to the entry so that package imports (koffi, tar-stream) and import.meta.url-relative
// paths resolve exactly as from the sources; the bundle is removed afterwards.
import { createRequire } from "node:module";
import { dirname, join } from "node:path";
import { fileURLToPath, pathToFileURL } from "node:url";

/** Bundles and runs `entry` (an absolute path to a .ts file). */
export async function runTs(entry) {
  const here = dirname(entry);
  const pkg = join(dirname(fileURLToPath(import.meta.url)), "..");
  const require = createRequire(join(pkg, "package.json"));
  const esbuild = createRequire(require.resolve("tsup"))("esbuild");
  const outfile = join(here, `.main-${process.pid}.mjs`);
  await esbuild.build({
    entryPoints: [entry],
    bundle: true,
    platform: "node",
    format: "esm",
    target: "node24",
    packages: "external",
    outfile,
    logLevel: "warning",
    banner: { js: "import { createRequire as __cr } from 'node:module'; const require = __cr(import.meta.url);" },
  });
  const { rmSync } = await import("node:fs");
  // A benchmark that ends with process.exit() (bad usage, a skip) skips the finally below.
  const removeBundle = () => rmSync(outfile, { force: true });
  process.once("exit", removeBundle);
  try {
    await import(pathToFileURL(outfile).href);
  } finally {
    removeBundle();
  }
}
