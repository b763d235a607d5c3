import { mkdtempSync, openSync, readSync, closeSync, rmSync, statSync, writeFileSync, readdirSync } from "node:fs";
import { createRequire } from "node:module";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { isIiiError } from "../errors.js";
import { ensureKernel } from "./kernel.js";
import { FIRMWARE_MANIFEST, platformEntry } from "./manifest.js";
import { KERNEL_FILE_OFFSET, parsePvhElfHeader } from "./pvh-elf.js";

const entry = platformEntry(FIRMWARE_MANIFEST, "linux-x86_64");
let realFirmware: string | undefined;
try {
  realFirmware = join(dirname(createRequire(import.meta.url).resolve("@superradcompany/microsandbox-linux-x64-gnu/package.json")), "lib", entry.file);
} catch {
  console.warn("SKIP kernel extraction tests: @superradcompany/microsandbox-linux-x64-gnu is not installed");
}

describe.skipIf(!realFirmware || process.arch !== "x64")("ensureKernel (koffi krunfw_get_kernel in a child process)", () => {
  const cacheDir = mkdtempSync(join(tmpdir(), "iii-kernel-cache-"));
  afterAll(() => rmSync(cacheDir, { recursive: true, force: true }));

  it("extracts libkrunfw 5.6.1 into a PVH ELF cached by the firmware digest", async () => {
    const kernel = await ensureKernel({ path: realFirmware!, sha256: entry.sha256 }, { cacheDir });
    expect(kernel.cached).toBe(false);
    expect(kernel.elfPath).toBe(join(cacheDir, `${entry.sha256}.elf`));
    // Measured facts (DESIGN §4): load 0x1000000, 21,561,344 bytes; the kernel's own Xen note says 0x1000000.
    expect(kernel.loadAddr).toBe(0x1000000n);
    expect(kernel.pvhEntry).toBe(0x1000000n);
    expect(kernel.sizeBytes).toBe(21_561_344);
    expect(statSync(kernel.elfPath).size).toBe(KERNEL_FILE_OFFSET + 21_561_344);
    const header = new Uint8Array(KERNEL_FILE_OFFSET);
    const fd = openSync(kernel.elfPath, "r");
    readSync(fd, header, 0, header.byteLength, 0);
    closeSync(fd);
    const parsed = parsePvhElfHeader(header);
    expect(parsed.load?.paddr).toBe(0x1000000n);
    expect(parsed.phys32Entry).toBe(0x1000000n);
    expect(readdirSync(cacheDir)).toEqual([`${entry.sha256}.elf`]); // no temp files left
  }, 60_000);

  it("reuses the cached ELF", async () => {
    const started = performance.now();
    const kernel = await ensureKernel({ path: realFirmware!, sha256: entry.sha256 }, { cacheDir });
    expect(kernel.cached).toBe(true);
    expect(performance.now() - started).toBeLessThan(500);
  });

  it("a library without krunfw_get_kernel is FirmwareCorrupt and leaves no temp files", async () => {
    const bogus = join(cacheDir, "libbogus.so");
    writeFileSync(bogus, "not an ELF");
    const error = await ensureKernel({ path: bogus, sha256: "0".repeat(64) }, { cacheDir: join(cacheDir, "other") }).catch((e: unknown) => e);
    expect(isIiiError(error, "FirmwareCorrupt")).toBe(true);
    expect((error as Error).message).toContain("krunfw_get_kernel");
    expect(readdirSync(join(cacheDir, "other"))).toEqual([]);
  });
});
