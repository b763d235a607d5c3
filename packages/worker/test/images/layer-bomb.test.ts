import { execFileSync } from "node:child_process";
import { mkdir, mkdtemp, readdir, readFile, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, beforeEach, describe, expect, it, vi } from "vitest";
import { ensureImage } from "../../src/images/index.js";
import { MAX_TRAILING_ZERO_BYTES } from "../../src/images/layers/tar-reader.js";
import { TAR_BYTES_PER_ENTRY, TAR_BYTES_PER_LAYER } from "../../src/images/layers/policy.js";
import { ustarHeader } from "./fixtures/fast-tar.js";
import { tarBytes, writeLayout, type Compression } from "./fixtures/oci-writer.js";

/**
 * The peak size of any file written under a `.iii-layers-*` spill dir, measured at every write(2) the scan makes
 * (fstat after the write): exact, unlike polling `du`, which a single 64 KiB zstd step can outrun by gigabytes.
 */
const spill = vi.hoisted(() => ({ peak: 0, writes: 0 }));
vi.mock("node:fs", async (importOriginal) => {
  const fs = await importOriginal<typeof import("node:fs")>();
  const writeSync = ((fd: number, ...rest: unknown[]) => {
    const n = (fs.writeSync as (...args: unknown[]) => number)(fd, ...rest);
    let path = "";
    try {
      path = fs.readlinkSync(`/proc/self/fd/${fd}`);
    } catch {
      // not a file we track
    }
    if (path.includes("/.iii-layers-")) {
      spill.writes += 1;
      spill.peak = Math.max(spill.peak, fs.fstatSync(fd).size);
    }
    return n;
  }) as typeof fs.writeSync;
  return { ...fs, writeSync, default: { ...fs, writeSync } };
});

const MiB = 1024 * 1024;
/** Small enough that a spill past it is obvious, large enough for the normal images below. */
const maxTotalBytes = 4 * MiB;
/** What the spill of a one-layer image may reach: the budget plus the per-entry and per-layer tar allowance. */
const bound = (entries: number) => maxTotalBytes + entries * TAR_BYTES_PER_ENTRY + TAR_BYTES_PER_LAYER;

describe("layer decompression bombs are refused before they fill the disk (review s14 #2)", () => {
  let work: string;
  let n = 0;

  beforeAll(async () => {
    work = await mkdtemp(join(tmpdir(), "iii-img-bomb-"));
  });

  afterAll(async () => {
    await rm(work, { recursive: true, force: true });
  });

  beforeEach(() => {
    spill.peak = 0;
    spill.writes = 0;
  });

  /** A one-layer image whose uncompressed tar is `tar` (diff_id matching, so only the limits can refuse it). */
  async function image(tar: Buffer, compression: Compression): Promise<{ ref: string; home: string }> {
    const dir = join(work, `case-${n++}`);
    await writeLayout(join(dir, "layout"), "1", { layers: [{ tar, compression }] });
    return { ref: `oci:${join(dir, "layout")}:1`, home: join(dir, "home") };
  }

  async function expectRefused(tar: Buffer, compression: Compression, expected: { code: string; message: RegExp }) {
    const { ref, home } = await image(tar, compression);
    const started = Date.now();
    await expect(ensureImage(ref, { home, limits: { maxTotalBytes } })).rejects.toMatchObject({ code: expected.code, message: expect.stringMatching(expected.message) });
    const ms = Date.now() - started;
    console.log(`[images] ${compression} ${(tar.length / MiB).toFixed(0)} MiB tar refused in ${ms} ms, spill peak ${spill.peak} bytes`);
    expect(spill.peak).toBeLessThanOrEqual(bound(1));
    expect(ms).toBeLessThan(10_000);
    expect(await readdir(join(home, "images", "sha256"))).toEqual([]);
    expect(await readdir(join(home, "images", "tmp"))).toEqual([]);
  }

  const tiny = () => tarBytes([{ name: "hello.txt", content: "hello\n" }]);

  for (const compression of ["gzip", "zstd"] as const) {
    it(`a tiny tar followed by 64 MiB of zeros (${compression})`, async () => {
      const tar = Buffer.concat([await tiny(), Buffer.alloc(64 * MiB)]);
      await expectRefused(tar, compression, {
        code: "LayerRejected",
        message: new RegExp(`^layer 1/1 \\(sha256:[a-f0-9]{12}\\): rejected: more than ${MAX_TRAILING_ZERO_BYTES} bytes after the end of the tar archive$`),
      });
    });
  }

  it("anything but zeros after the end of the archive", async () => {
    const tar = Buffer.concat([await tiny(), Buffer.alloc(4096, 0x41)]);
    await expectRefused(tar, "zstd", { code: "ImageInvalid", message: /^layer 1\/1 \(sha256:[a-f0-9]{12}\): cannot read the layer: data after the end of the tar archive$/ });
  });

  it("64 MiB of PAX records that no entry follows (no entry, no body: only the spill bound sees them)", async () => {
    const pax = ustarHeader("PaxHeaders/x", { type: "x" });
    const records = Buffer.alloc(64 * MiB);
    for (let off = 0; off < records.length; off += pax.length) pax.copy(records, off);
    const tar = Buffer.concat([(await tiny()).subarray(0, 1024), records, Buffer.alloc(1024)]);
    await expectRefused(tar, "zstd", {
      code: "LayerRejected",
      message: new RegExp(`^layer 1/1 \\(sha256:[a-f0-9]{12}\\): rejected: the uncompressed layers exceed the image's size limit of ${maxTotalBytes} bytes`),
    });
  });

  for (const [kind, type, linkname] of [
    ["symlink", "2", "hello.txt"],
    ["hardlink", "1", "hello.txt"],
    ["character-device", "3", ""],
  ] as const) {
    it(`a ${kind} entry with a 64 MiB body`, async () => {
      const header = ustarHeader("big", { type, size: 64 * MiB, linkname });
      const tar = Buffer.concat([(await tiny()).subarray(0, 1024), header, Buffer.alloc(64 * MiB), Buffer.alloc(1024)]);
      await expectRefused(tar, "gzip", { code: "LayerRejected", message: new RegExp(`entry "big" rejected: a ${kind} entry with a body of ${64 * MiB} bytes`) });
      expect(spill.peak).toBeLessThan(64 * 1024);
    });
  }

  it("small bodies of non-file entries count against the image's budget", async () => {
    const entries = [];
    for (let i = 0; i < 80; i++) entries.push(ustarHeader(`l${i}`, { type: "2", size: 60 * 1024, linkname: "hello.txt" }), Buffer.alloc(60 * 1024));
    const tar = Buffer.concat([(await tiny()).subarray(0, 1024), ...entries, Buffer.alloc(1024)]);
    await expectRefused(tar, "gzip", { code: "LayerRejected", message: new RegExp(`entry "l\\d+" rejected: the image exceeds the total size limit of ${maxTotalBytes} bytes`) });
  });

  it("normal images still apply: GNU tar (10 KiB and 1 MiB records), PAX records on every entry, close to the budget", async () => {
    const src = join(work, "src");
    await mkdir(join(src, "app", "lib"), { recursive: true });
    await writeFile(join(src, "app", "server.js"), "console.log('hi')\n");
    await writeFile(join(src, "app", "lib", "data.bin"), Buffer.alloc(3 * MiB, 7));
    await rm(join(src, "app", "link"), { force: true });
    execFileSync("ln", ["-s", "server.js", join(src, "app", "link")]);
    for (const blocking of ["20", "2048"]) {
      for (const compression of ["gzip", "zstd"] as const) {
        const tar = execFileSync("tar", ["--format=gnu", "-b", blocking, "-cf", "-", "-C", src, "."], { maxBuffer: 64 * MiB });
        const { ref, home } = await image(tar, compression);
        const ensured = await ensureImage(ref, { home, limits: { maxTotalBytes } });
        expect(await readFile(join(ensured.rootfs, "app", "server.js"), "utf8")).toBe("console.log('hi')\n");
        expect(spill.peak).toBeGreaterThan(3 * MiB);
      }
    }
    // 1,500 files of 2 KiB, each behind a PAX record (long names): 3 MiB of data plus ~3 MiB of tar metadata
    const files = Array.from({ length: 1500 }, (_, i) => ({ name: `d/${"n".repeat(150)}-${i}`, content: Buffer.alloc(2048, 1), pax: { path: `d/${"n".repeat(150)}-${i}` } }));
    const { ref, home } = await image(await tarBytes(files), "zstd");
    const ensured = await ensureImage(ref, { home, limits: { maxTotalBytes } });
    expect((await readdir(join(ensured.rootfs, "d"))).length).toBe(1500);
  });
});
