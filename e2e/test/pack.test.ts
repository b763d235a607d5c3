import { execFile, execFileSync, spawnSync } from "node:child_process";
import { promisify } from "node:util";
import { mkdtempSync, readdirSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { afterAll, beforeAll, expect, it } from "vitest";

const execFileAsync = promisify(execFile);
const ROOT = fileURLToPath(new URL("../..", import.meta.url));
const PACKAGES = ["engine", "filesystem", "init", "network", "worker"];
const BINS = ["iii", "iii-worker", "iii-fs", "iii-init"];

let dir: string;
beforeAll(() => {
  dir = mkdtempSync(join(tmpdir(), "iii-pack-"));
});
afterAll(() => rmSync(dir, { recursive: true, force: true }));

it("every package's pnpm pack tarball installs into an empty dir and its bins print --help", async () => {
  const tarballs = join(dir, "tarballs");
  for (const pkg of PACKAGES) {
    execFileSync("pnpm", ["pack", "--pack-destination", tarballs], { cwd: join(ROOT, "packages", pkg), stdio: "pipe" });
  }
  const files = readdirSync(tarballs).filter((f) => f.endsWith(".tgz"));
  expect(files).toHaveLength(PACKAGES.length);
  const app = join(dir, "app");
  execFileSync("mkdir", ["-p", app]);
  writeFileSync(join(app, "package.json"), JSON.stringify({ name: "scratch", private: true }));
  // All tarballs at once: internal dependencies resolve to each other, third-party ones from the registry
  // (asynchronously, so the test runner stays responsive; one retry for a registry that stalls).
  const install = () =>
    execFileAsync("npm", ["install", "--no-audit", "--no-fund", "--omit=optional", "--prefer-offline", "--fetch-timeout=60000", "--fetch-retries=3", ...files.map((f) => join(tarballs, f))], {
      cwd: app,
      timeout: 300_000,
    });
  await install().catch(async (error: Error) => {
    console.warn(`[e2e] npm install failed once (${error.message.split("\n")[0]}); retrying`);
    await install();
  });
  for (const bin of BINS) {
    const run = spawnSync(join(app, "node_modules", ".bin", bin), ["--help"], { encoding: "utf8", timeout: 30_000 });
    expect(run.status, `${bin} --help: ${run.stderr}`).toBe(0);
    expect(`${run.stdout}${run.stderr}`.toLowerCase()).toMatch(/usage/);
  }
  const worker = spawnSync(join(app, "node_modules", ".bin", "iii"), ["worker", "--help"], { encoding: "utf8" });
  expect(worker.status).toBe(0);
  expect(worker.stdout).toContain("iii managed worker runtime");
}, 700_000);
