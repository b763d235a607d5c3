#!/usr/bin/env node
// Setup for the tests that install npm packages, so that they never reach the public registry themselves:
// 1. the tarballs examples/hello-worker's lockfile installs, fetched once into the test cache ($III_TEST_CACHE/npm,
//    else <tmpdir>/iii-test-cache/npm), each checked against the lockfile's sha512 (the hello-worker VM test serves
//    them from a registry on this machine);
// 2. the third-party dependencies of the published packages, in an npm cache of their own (…/npm-e2e): the e2e
//    pack test installs the packed tarballs from it with --offline.
import { execFileSync } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { ensureTarballs, lockedPackages, npmCacheDir } from "../packages/worker/test/worker-vm/npm-registry.ts";

const lockfile = fileURLToPath(new URL("../examples/hello-worker/package-lock.json", import.meta.url));
const packages = lockedPackages(lockfile);
try {
  const fetched = await ensureTarballs(packages);
  console.error(`fetch-test-fixtures: ${packages.length} npm tarballs in ${npmCacheDir()} (${fetched} fetched)`);

  const root = fileURLToPath(new URL("..", import.meta.url));
  const e2eCache = join(npmCacheDir(), "..", "npm-e2e");
  const dependencies = {};
  for (const pkg of ["engine", "filesystem", "init", "network", "worker"]) {
    const manifest = JSON.parse(readFileSync(join(root, "packages", pkg, "package.json"), "utf8"));
    for (const field of ["dependencies", "optionalDependencies"]) {
      for (const [name, range] of Object.entries(manifest[field] ?? {})) if (!String(range).startsWith("workspace:")) dependencies[name] = range;
    }
  }
  const app = mkdtempSync(join(tmpdir(), "iii-e2e-prefetch-"));
  try {
    writeFileSync(join(app, "package.json"), JSON.stringify({ name: "iii-e2e-prefetch", private: true, dependencies }));
    const npmArgs = ["install", "--ignore-scripts", "--no-audit", "--no-fund", "--prefer-offline", "--fetch-retries=3", "--cache", e2eCache];
    execFileSync("npm", npmArgs, { cwd: app, stdio: ["ignore", "ignore", "inherit"], timeout: 900_000 });
  } finally {
    rmSync(app, { recursive: true, force: true });
  }
  console.error(`fetch-test-fixtures: the published packages' ${Object.keys(dependencies).length} third-party dependencies (and theirs) in ${e2eCache}`);
} catch (error) {
  console.error(`fetch-test-fixtures: ${error instanceof Error ? error.message : String(error)}`);
  process.exit(1);
}
