#!/usr/bin/env node
// Builds the workspace packages that a package's own script needs, through turbo (cached, so a second run is
// quick), so that `pnpm --filter @iii/worker typecheck` or `pnpm --filter @iii/engine test` works in a fresh
// clone after `pnpm install` alone. Under turbo itself (`pnpm run typecheck`, `pnpm run test`), turbo.json's
// dependsOn already built them: turbo sets TURBO_HASH for its tasks, and this then does nothing.
//
//   node ../../scripts/build-deps.mjs          the package's workspace dependencies (turbo --filter=<name>^...)
//   node ../../scripts/build-deps.mjs --self   those and the package itself (--filter=<name>...)
import { spawnSync } from "node:child_process";
import { existsSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";

const root = join(dirname(fileURLToPath(import.meta.url)), "..");
const name = process.env.npm_package_name;
if (process.env.TURBO_HASH) process.exit(0);
if (!name) {
  console.error("build-deps: run me from a package script (npm_package_name is not set)");
  process.exit(2);
}
const self = process.argv.includes("--self");
const turbo = join(root, "node_modules", ".bin", "turbo");
if (!existsSync(turbo)) {
  console.error(`build-deps: ${turbo} is missing: run pnpm install at the repository root`);
  process.exit(1);
}
const filter = self ? `${name}...` : `${name}^...`;
const run = spawnSync(turbo, ["run", "build", `--filter=${filter}`, "--output-logs=errors-only", "--log-prefix=none"], {
  cwd: root,
  stdio: ["ignore", 2, 2], // turbo's summary and any failed task's log, on stderr
});
if (run.status !== 0) {
  console.error(`build-deps: building ${self ? name : `${name}'s dependencies`} failed (turbo run build --filter=${filter})`);
  process.exit(run.status ?? 1);
}
