import { existsSync, mkdirSync, mkdtempSync, rmSync, statSync, symlinkSync, writeFileSync } from "node:fs";
import { createRequire } from "node:module";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { isIiiError } from "../errors.js";
import { describeFirmware } from "./describe.js";
import { FIRMWARE_MANIFEST, firmwarePlatform, platformEntry } from "./manifest.js";
import { FirmwareResolver } from "./resolver.js";

const entry = platformEntry(FIRMWARE_MANIFEST, "linux-x86_64");

function npmFirmware(): string | undefined {
  try {
    return join(dirname(createRequire(import.meta.url).resolve("@superradcompany/microsandbox-linux-x64-gnu/package.json")), "lib", entry.file);
  } catch {
    return undefined;
  }
}

const realFirmware = npmFirmware();
const platformOk = firmwarePlatform() === "linux-x86_64";
if (!realFirmware) console.warn("SKIP firmware source tests: @superradcompany/microsandbox-linux-x64-gnu is not installed");
if (!platformOk) console.warn(`SKIP firmware source tests: host platform ${firmwarePlatform()} has no pinned firmware`);

describe.skipIf(!realFirmware || !platformOk)("FirmwareResolver", () => {
  let root: string;
  const base = { systemDirs: [] as string[], npmPackageDir: null, download: false } as const;

  beforeAll(() => {
    root = mkdtempSync(join(tmpdir(), "iii-fw-resolve-"));
  });
  afterAll(() => rmSync(root, { recursive: true, force: true }));

  function home(name: string): string {
    const dir = join(root, name);
    mkdirSync(dir, { recursive: true });
    return dir;
  }

  it("an III_HOME the digest memo creates is private (0700), like the image cache's", async () => {
    const fresh = join(root, "made-by-memo", "home");
    await new FirmwareResolver({ ...base, env: { III_HOME: fresh, III_LIBKRUNFW_PATH: realFirmware } }).resolve();
    expect(statSync(fresh).mode & 0o777).toBe(0o700);
    expect(existsSync(join(fresh, "cache", "firmware-digests.json"))).toBe(true);
  });

  it("III_LIBKRUNFW_PATH as a file wins and is verified", async () => {
    const resolved = await new FirmwareResolver({ ...base, env: { III_HOME: home("h1"), III_LIBKRUNFW_PATH: realFirmware } }).resolve();
    expect(resolved.source).toBe("env");
    expect(resolved.path).toBe(realFirmware);
    expect(resolved.sha256).toBe(entry.sha256);
    expect(resolved.candidates.map((c) => [c.source, c.status])).toEqual([
      ["env", "found"],
      ["home", "skipped"],
      ["system", "skipped"],
      ["npm", "skipped"],
      ["download", "skipped"],
    ]);
  });

  it("III_LIBKRUNFW_PATH as a directory holding the SONAME (distro layout)", async () => {
    const dir = home("envdir");
    symlinkSync(realFirmware!, join(dir, entry.soname));
    const resolved = await new FirmwareResolver({ ...base, env: { III_HOME: home("h2"), III_LIBKRUNFW_PATH: dir } }).resolve();
    expect(resolved.path).toBe(join(dir, entry.soname));
  });

  it("a corrupt III_LIBKRUNFW_PATH is FirmwareCorrupt naming both digests, even when later sources exist", async () => {
    const bad = join(home("bad"), "libkrunfw.so");
    writeFileSync(bad, "not a kernel");
    const error = await new FirmwareResolver({ ...base, npmPackageDir: dirname(dirname(realFirmware!)), env: { III_HOME: home("h3"), III_LIBKRUNFW_PATH: bad } })
      .resolve()
      .catch((e: unknown) => e);
    expect(isIiiError(error, "FirmwareCorrupt")).toBe(true);
    expect((error as Error).message).toContain(entry.sha256);
    expect((error as Error).message).toMatch(/sha256 [0-9a-f]{64}, expected [0-9a-f]{64}/);
  });

  it("a missing III_LIBKRUNFW_PATH is FirmwareNotFound, not a silent fallback", async () => {
    const error = await new FirmwareResolver({ ...base, npmPackageDir: dirname(dirname(realFirmware!)), env: { III_HOME: home("h4"), III_LIBKRUNFW_PATH: join(root, "nope") } })
      .resolve()
      .catch((e: unknown) => e);
    expect(isIiiError(error, "FirmwareNotFound")).toBe(true);
    expect((error as Error).message).toMatch(/III_LIBKRUNFW_PATH=.*nope: no such file/);
  });

  it("~/.iii/lib, then system dirs, then the npm package", async () => {
    const h = home("h5");
    mkdirSync(join(h, "lib"));
    symlinkSync(realFirmware!, join(h, "lib", entry.file));
    const fromHome = await new FirmwareResolver({ ...base, env: { III_HOME: h } }).resolve();
    expect(fromHome.source).toBe("home");

    const sys = home("sys");
    symlinkSync(realFirmware!, join(sys, entry.file));
    writeFileSync(join(sys, "libkrunfw.so.5.5.0"), "older");
    const fromSystem = await new FirmwareResolver({ ...base, systemDirs: [join(root, "absent"), sys], env: { III_HOME: home("h6") } }).resolve();
    expect(fromSystem.source).toBe("system");
    expect(fromSystem.path).toBe(join(sys, entry.file));

    const fromNpm = await new FirmwareResolver({ ...base, npmPackageDir: undefined, env: { III_HOME: home("h7") } }).resolve();
    expect(fromNpm.source).toBe("npm");
    expect(fromNpm.candidates.find((c) => c.source === "system")?.status).toBe("absent");
  });

  it("nothing found and downloads disabled is FirmwareNotFound", async () => {
    const error = await new FirmwareResolver({ ...base, env: { III_HOME: home("h8") } }).resolve().catch((e: unknown) => e);
    expect(isIiiError(error, "FirmwareNotFound")).toBe(true);
    expect((error as Error).message).toContain("downloads are disabled");
  });

  it("describeFirmware says which source won and why the others did not", async () => {
    const d = await describeFirmware({ III_HOME: home("h9") }, { systemDirs: [home("emptysys")] });
    expect(d.ok).toBe(true);
    expect(d.source).toBe("npm");
    expect(d.detail).toMatch(/^libkrunfw 5\.6\.1 from npm/);
    expect(d.detail).toMatch(/env\s+absent\s+III_LIBKRUNFW_PATH: III_LIBKRUNFW_PATH is not set/);
    expect(d.detail).toMatch(/home\s+absent/);
    expect(d.detail).toMatch(/download\s+skipped/);

    const bad = join(home("bad2"), "libkrunfw.so.5.6.1");
    writeFileSync(bad, "x");
    const corrupt = await describeFirmware({ III_HOME: home("h10"), III_LIBKRUNFW_PATH: bad }, { systemDirs: [] });
    expect(corrupt.ok).toBe(false);
    expect(corrupt.detail.split("\n")[0]).toMatch(new RegExp(`has sha256 [0-9a-f]{64}, expected ${entry.sha256}`));

    const none = await describeFirmware({ III_HOME: home("h11") }, { systemDirs: [], npmPackageDir: null });
    expect(none.ok).toBe(true);
    expect(none.source).toBe("download");
    expect(none.detail).toContain(entry.url);

    const offline = await describeFirmware({ III_HOME: home("h12"), III_LIBKRUNFW_NO_DOWNLOAD: "1" }, { systemDirs: [], npmPackageDir: null });
    expect(offline.ok).toBe(false);
  });
});
