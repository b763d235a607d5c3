import { execFileSync, spawnSync } from "node:child_process";
import { mkdtempSync, readdirSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { afterAll, beforeAll, expect, it } from "vitest";

const ROOT = fileURLToPath(new URL("../..", import.meta.url));
const PACKAGES = ["engine", "filesystem", "init", "network", "worker"];
const BINS = ["iii", "iii-worker", "iii-fs", "iii-init"];

let dir: string;
beforeAll(() => {
  dir = mkdtempSync(join(tmpdir(), "iii-pack-"));
});
afterAll(() => rmSync(dir, { recursive: true, force: true }));

it("every package's pnpm pack tarball installs into an empty dir and its bins print --help", () => {
  const tarballs = join(dir, "tarballs");
  for (const pkg of PACKAGES) {
    execFileSync("pnpm", ["pack", "--pack-destination", tarballs], { cwd: join(ROOT, "packages", pkg), stdio: "pipe" });
  }
  const files = readdirSync(tarballs).filter((f) => f.endsWith(".tgz"));
  expect(files).toHaveLength(PACKAGES.length);
  const app = join(dir, "app");
  execFileSync("mkdir", ["-p", app]);
  writeFileSync(join(app, "package.json"), JSON.stringify({ name: "scratch", private: true }));
  // All tarballs at once: internal dependencies resolve to each other, third-party ones from the registry.
  execFileSync("npm", ["install", "--no-audit", "--no-fund", "--omit=optional", ...files.map((f) => join(tarballs, f))], {
    cwd: app,
    stdio: "pipe",
    timeout: 240_000,
  });
  for (const bin of BINS) {
    const run = spawnSync(join(app, "node_modules", ".bin", bin), ["--help"], { encoding: "utf8", timeout: 30_000 });
    expect(run.status, `${bin} --help: ${run.stderr}`).toBe(0);
    expect(`${run.stdout}${run.stderr}`.toLowerCase()).toMatch(/usage/);
  }
  const worker = spawnSync(join(app, "node_modules", ".bin", "iii"), ["worker", "--help"], { encoding: "utf8" });
  expect(worker.status).toBe(0);
  expect(worker.stdout).toContain("iii managed worker runtime");
}, 300_000);
