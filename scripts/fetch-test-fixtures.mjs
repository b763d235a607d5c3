#!/usr/bin/env node
// Setup for the VM tests: the npm tarballs examples/hello-worker's lockfile installs, fetched once from the public
// registry into the test cache ($III_TEST_CACHE/npm, else <tmpdir>/iii-test-cache/npm), each checked against the
// lockfile's sha512. The hello-worker VM test serves them from a registry on this machine and never fetches.
import { fileURLToPath } from "node:url";
import { ensureTarballs, lockedPackages, npmCacheDir } from "../packages/worker/test/worker-vm/npm-registry.ts";

const lockfile = fileURLToPath(new URL("../examples/hello-worker/package-lock.json", import.meta.url));
const packages = lockedPackages(lockfile);
try {
  const fetched = await ensureTarballs(packages);
  console.error(`fetch-test-fixtures: ${packages.length} npm tarballs in ${npmCacheDir()} (${fetched} fetched)`);
} catch (error) {
  console.error(`fetch-test-fixtures: ${error instanceof Error ? error.message : String(error)}`);
  process.exit(1);
}
