// The packages as a user gets them: every package's `pnpm pack` tarball installed into an empty npm project.
import { execFile, execFileSync, spawnSync } from "node:child_process";
import { promisify } from "node:util";
import { existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, realpathSync, rmSync, writeFileSync } from "node:fs";
import { createRequire } from "node:module";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { afterAll, beforeAll, describe, expect, it } from "vitest";

const execFileAsync = promisify(execFile);
const ROOT = fileURLToPath(new URL("../..", import.meta.url));
const PACKAGES = ["engine", "filesystem", "init", "network", "worker"] as const;
const BINS = { iii: "engine", "iii-worker": "worker", "iii-fs": "filesystem" } as const;
const E2E_NPM_CACHE = join(process.env.III_TEST_CACHE ?? join(tmpdir(), "iii-test-cache"), "npm-e2e");
const version = (pkg: string): string =>
  (JSON.parse(readFileSync(join(ROOT, "packages", pkg, "package.json"), "utf8")) as { version: string }).version;

let dir: string;
let app: string;
const bin = (name: string): string => join(app, "node_modules", ".bin", name);

beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), "iii-pack-"));
  const tarballs = join(dir, "tarballs");
  for (const pkg of PACKAGES) {
    execFileSync("pnpm", ["pack", "--pack-destination", tarballs], { cwd: join(ROOT, "packages", pkg), stdio: "pipe" });
  }
  const files = readdirSync(tarballs).filter((f) => f.endsWith(".tgz"));
  expect(files).toHaveLength(PACKAGES.length);
  app = join(dir, "app");
  mkdirSync(app);
  writeFileSync(join(app, "package.json"), JSON.stringify({ name: "scratch", private: true }));
  // All tarballs at once: internal dependencies resolve to each other, third-party ones from the registry
  // (asynchronously, so the test runner stays responsive; one retry for a registry that stalls). Optional
  // dependencies are installed as a user gets them (the firmware package is one); jco is an optional peer,
  // so it is not.
  // Third-party packages come from the npm cache scripts/bootstrap.sh filled (scripts/fetch-test-fixtures.mjs):
  // the test itself never reaches the public registry (a registry that stalled failed it twice in 300 s).
  if (!existsSync(join(E2E_NPM_CACHE, "_cacache"))) {
    throw new Error(`no npm cache at ${E2E_NPM_CACHE}: run ./scripts/bootstrap.sh (or node scripts/fetch-test-fixtures.mjs) with the same III_TEST_CACHE`);
  }
  const started = Date.now();
  await execFileAsync("npm", ["install", "--no-audit", "--no-fund", "--offline", "--cache", E2E_NPM_CACHE, ...files.map((f) => join(tarballs, f))], {
    cwd: app,
    timeout: 300_000,
  }).catch((error: Error & { stderr?: string }) => {
    throw new Error(`npm install --offline of the packed tarballs failed (a dependency missing from ${E2E_NPM_CACHE}? run ./scripts/bootstrap.sh): ${error.stderr ?? error.message}`);
  });
  console.log(`[e2e] npm install of the ${files.length} tarballs: ${((Date.now() - started) / 1000).toFixed(1)} s`);
}, 700_000);
afterAll(() => rmSync(dir, { recursive: true, force: true }));

describe("packed tarballs installed into an empty npm project", () => {
  it("installs the firmware package (an optional dependency) but not jco (an optional peer)", () => {
    expect(existsSync(join(app, "node_modules", "@superradcompany", "microsandbox-linux-x64-gnu", "package.json"))).toBe(true);
    expect(existsSync(join(app, "node_modules", "@bytecodealliance", "jco"))).toBe(false);
  });

  it("the packages with native x86-64 glibc code refuse other platforms by npm's own check; @iii/init (a static x86-64 ELF) any x86-64 Linux; the others install anywhere", () => {
    // npm applies os/cpu/libc of a non-optional package against the host itself, so the check is called directly.
    const npmDir = join(dirname(realpathSync(execFileSync("which", ["npm"], { encoding: "utf8" }).trim())), "..");
    const { checkPlatform } = createRequire(join(npmDir, "package.json"))("npm-install-checks") as {
      checkPlatform: (pkg: object, force: boolean, environment: { os: string; cpu: string; libc?: string }) => void;
    };
    const installed = (pkg: string): object => JSON.parse(readFileSync(join(app, "node_modules", "@iii", pkg, "package.json"), "utf8")) as object;
    for (const pkg of ["filesystem", "worker"]) {
      expect(() => checkPlatform(installed(pkg), false, { os: "linux", cpu: "x64", libc: "glibc" }), pkg).not.toThrow();
      for (const other of [{ os: "darwin", cpu: "arm64" }, { os: "linux", cpu: "arm64", libc: "glibc" }, { os: "linux", cpu: "x64", libc: "musl" }]) {
        expect(() => checkPlatform(installed(pkg), false, other), `${pkg} on ${JSON.stringify(other)}`).toThrow(expect.objectContaining({ code: "EBADPLATFORM" }));
      }
    }
    expect(() => checkPlatform(installed("init"), false, { os: "linux", cpu: "x64", libc: "musl" })).not.toThrow();
    for (const other of [{ os: "darwin", cpu: "arm64" }, { os: "linux", cpu: "arm64", libc: "glibc" }]) {
      expect(() => checkPlatform(installed("init"), false, other), `init on ${JSON.stringify(other)}`).toThrow(expect.objectContaining({ code: "EBADPLATFORM" }));
    }
    for (const pkg of ["engine", "network"]) expect(() => checkPlatform(installed(pkg), false, { os: "darwin", cpu: "arm64" }), pkg).not.toThrow();
  });

  it("every bin prints usage for --help and its package's version for --version", () => {
    for (const [name, pkg] of Object.entries(BINS)) {
      const help = spawnSync(bin(name), ["--help"], { encoding: "utf8", timeout: 30_000 });
      expect(help.status, `${name} --help: ${help.stderr}`).toBe(0);
      expect(`${help.stdout}${help.stderr}`.toLowerCase()).toMatch(/usage/);
      const run = spawnSync(bin(name), ["--version"], { encoding: "utf8", timeout: 30_000 });
      expect(run.status, `${name} --version: ${run.stderr}`).toBe(0);
      expect(run.stdout).toBe(`${version(pkg)}\n`);
    }
    const worker = spawnSync(bin("iii"), ["worker", "--help"], { encoding: "utf8" });
    expect(worker.status).toBe(0);
    expect(worker.stdout).toContain("iii managed worker runtime");
    const workerVersion = spawnSync(bin("iii"), ["worker", "--version"], { encoding: "utf8" });
    expect(workerVersion.stdout).toBe(`${version("worker")}\n`);
  });

  it("ships each package's LICENSE, and @iii/init's NOTICE", () => {
    const license = readFileSync(join(ROOT, "LICENSE"), "utf8");
    expect(license).toContain("Apache License\n                           Version 2.0, January 2004");
    for (const pkg of PACKAGES) {
      expect(readFileSync(join(app, "node_modules", "@iii", pkg, "LICENSE"), "utf8"), pkg).toBe(license);
    }
    expect(readFileSync(join(app, "node_modules", "@iii", "init", "NOTICE"), "utf8")).toMatch(/QuickJS [\d.]+[\s\S]*GNU C Library \(glibc\)/);
  });

  it("@iii/init ships the guest init and no build leftovers", () => {
    const dist = readdirSync(join(app, "node_modules", "@iii", "init", "dist")).sort();
    expect(dist).toContain("init.krun");
    expect(dist.filter((f) => !/\.(js|js\.map|d\.ts)$/.test(f))).toEqual(["init.krun"]);
  });

  it("a strict NodeNext consumer type-checks against every package without skipLibCheck", () => {
    const consumer = join(app, "consumer");
    mkdirSync(consumer, { recursive: true });
    writeFileSync(
      join(consumer, "tsconfig.json"),
      JSON.stringify({
        compilerOptions: { module: "NodeNext", moduleResolution: "NodeNext", target: "ES2022", strict: true, skipLibCheck: false, noEmit: true, types: ["node"] },
        include: ["index.ts"],
      }),
    );
    writeFileSync(
      join(consumer, "index.ts"),
      [
        'import * as engine from "@iii/engine";',
        'import * as filesystem from "@iii/filesystem";',
        'import * as init from "@iii/init";',
        'import * as network from "@iii/network";',
        'import * as worker from "@iii/worker";',
        "export const modules: object[] = [engine, filesystem, init, network, worker];",
        "export type Client = worker.SupervisorClient;",
        "",
      ].join("\n"),
    );
    // package.json "type": "module" for the consumer: NodeNext then treats index.ts as ESM.
    writeFileSync(join(consumer, "package.json"), JSON.stringify({ type: "module" }));
    const tsc = spawnSync(process.execPath, [join(ROOT, "node_modules", "typescript", "bin", "tsc"), "-p", consumer], { encoding: "utf8", timeout: 120_000 });
    expect(`${tsc.stdout}${tsc.stderr}`).toBe("");
    expect(tsc.status).toBe(0);
  });

  it("require() of every package loads it (the default export condition; Node's require of ES modules)", () => {
    const script = `for (const p of ${JSON.stringify(PACKAGES.map((p) => `@iii/${p}`))}) { const m = require(p); if (Object.keys(m).length === 0) throw new Error(p + " exports nothing"); console.log(p, require.resolve(p)); }`;
    const run = spawnSync(process.execPath, ["-e", script], { cwd: app, encoding: "utf8" });
    expect(run.stderr).toBe("");
    expect(run.status).toBe(0);
    for (const pkg of PACKAGES) expect(run.stdout).toContain(`@iii/${pkg} ${join(app, "node_modules", "@iii", pkg, "dist", "index.js")}`);
  });

  it("iii-worker doctor finds the installed guest init and the firmware in the installed npm package", () => {
    const home = join(dir, "home");
    const env: NodeJS.ProcessEnv = { ...process.env, III_HOME: home, III_LIBKRUNFW_NO_DOWNLOAD: "1" };
    for (const name of ["III_INIT_PATH", "III_LIBKRUNFW_PATH"]) delete env[name];
    const run = spawnSync(bin("iii-worker"), ["doctor", "--json"], { encoding: "utf8", env, timeout: 60_000 });
    const report = JSON.parse(run.stdout) as { checks: Array<{ name: string; verdict: string; detail: string }> };
    expect(report.checks.find((c) => c.name === "guest init")).toMatchObject({ verdict: "ok", detail: expect.stringMatching(/ \(static ELF, \d\.\d\d MB\)$/) });
    expect(report.checks.find((c) => c.name === "guest init")!.detail.startsWith(`${join(app, "node_modules", "@iii", "init", "dist", "init.krun")} (`)).toBe(true);
    const firmware = report.checks.find((c) => c.name === "firmware");
    expect(firmware?.verdict, firmware?.detail).toBe("ok");
    const lib = join(app, "node_modules", "@superradcompany", "microsandbox-linux-x64-gnu", "lib");
    const pinned = (JSON.parse(readFileSync(join(ROOT, "firmware", "manifest.json"), "utf8")) as { version: string }).version;
    expect(firmware!.detail.split("\n")[0]).toMatch(new RegExp(`^libkrunfw ${pinned} from npm \\(`));
    expect(firmware!.detail.split("\n")[0]).toContain(`(${lib}/libkrunfw.so.${pinned})`);
  });
});
