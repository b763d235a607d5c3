#!/usr/bin/env node
// Bundles the image benchmark (TypeScript, importing src/images) with esbuild and runs it:
//   node bench/images/run.mjs            (III_BENCH_IMAGE_MB=300, III_IMAGES_CACHE for the base image cache)
import { execFileSync, spawnSync } from "node:child_process";
import { createRequire } from "node:module";
import { mkdirSync, mkdtempSync, rmSync } from "node:fs";
import { join } from "node:path";
import { fileURLToPath } from "node:url";

const here = fileURLToPath(new URL(".", import.meta.url));
// The esbuild binary that tsup ships (pnpm does not hoist it to the root's node_modules/.bin).
const esbuild = createRequire(createRequire(join(here, "../../package.json")).resolve("tsup")).resolve("esbuild/bin/esbuild");
// Bundles go under the package's node_modules, so the modules src/ loads lazily (createRequire) still resolve.
const cache = join(here, "../../node_modules/.cache");
mkdirSync(cache, { recursive: true });
const out = mkdtempSync(join(cache, "iii-bench-images-"));
try {
  const banner = "--banner:js=import { createRequire as __cr } from 'node:module'; const require = __cr(import.meta.url);";
  for (const name of ["pull-bench", "ensure-runner"]) {
    // --packages=external: dependencies load from node_modules when used, as in the published build (tsup keeps
    // them external); bundled in, undici alone added 1.4 MB of source parsed up front.
    execFileSync(esbuild, [join(here, `${name}.ts`), "--bundle", "--platform=node", "--format=esm", "--target=node24", "--packages=external", `--outfile=${join(out, `${name}.mjs`)}`, "--log-level=error", banner]);
  }
  const result = spawnSync(process.execPath, [join(out, "pull-bench.mjs"), join(out, "ensure-runner.mjs"), join(here, "../../../../images/build.sh")], { stdio: "inherit" });
  process.exitCode = result.status ?? 1;
} finally {
  rmSync(out, { recursive: true, force: true });
}
