import { createHash } from "node:crypto";
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { isIiiError } from "../errors.js";
import type { FirmwareManifest } from "./manifest.js";
import { FirmwareResolver } from "./resolver.js";
import { sha256FileMemo } from "./digest.js";

const dir = mkdtempSync(join(tmpdir(), "iii-fw-digest-"));
afterAll(() => rmSync(dir, { recursive: true, force: true }));
const sha = (b: string) => createHash("sha256").update(b).digest("hex");

describe("verified-digest memo", () => {
  it("remembers a digest and notices an in-place rewrite of the same size", async () => {
    const file = join(dir, "lib.so");
    const memo = join(dir, "memo", "digests.json");
    writeFileSync(file, "kernel-bytes-1");
    expect(await sha256FileMemo(file, memo)).toBe(sha("kernel-bytes-1"));
    expect(JSON.parse(readFileSync(memo, "utf8"))[file].sha256).toBe(sha("kernel-bytes-1"));
    expect(await sha256FileMemo(file, memo)).toBe(sha("kernel-bytes-1"));
    await new Promise((r) => setTimeout(r, 20));
    writeFileSync(file, "kernel-bytes-2");
    expect(await sha256FileMemo(file, memo)).toBe(sha("kernel-bytes-2"));
    writeFileSync(memo, "{not json");
    expect(await sha256FileMemo(file, memo)).toBe(sha("kernel-bytes-2"));
  });

  it("the resolver still rejects a pinned file corrupted after it was verified once", async () => {
    const home = join(dir, "home");
    const lib = join(dir, "envlib.so");
    writeFileSync(lib, "good firmware");
    const manifest: FirmwareManifest = {
      name: "libkrunfw",
      version: "5.6.1",
      abi: 5,
      platforms: { "linux-x86_64": { file: "libkrunfw.so.5.6.1", soname: "libkrunfw.so.5", size: 13, sha256: sha("good firmware"), url: "http://127.0.0.1:9/none" } },
    };
    const resolver = new FirmwareResolver({ env: { III_HOME: home, III_LIBKRUNFW_PATH: lib }, manifest, platform: "linux-x86_64", systemDirs: [], npmPackageDir: null, download: false });
    expect((await resolver.resolve()).sha256).toBe(sha("good firmware"));
    expect(existsSync(join(home, "cache", "firmware-digests.json"))).toBe(true);
    await new Promise((r) => setTimeout(r, 20));
    writeFileSync(lib, "evil firmware");
    const error = await resolver.resolve().catch((e: unknown) => e);
    expect(isIiiError(error, "FirmwareCorrupt")).toBe(true);
    expect((error as Error).message).toContain(`sha256 ${sha("evil firmware")}, expected ${sha("good firmware")}`);
  });
});
