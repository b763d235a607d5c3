import { execFileSync } from "node:child_process";
import { randomBytes } from "node:crypto";
import { mkdir, mkdtemp, readdir, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { ensureImage } from "../../src/images/index.js";
import { checkDeclaredLayerSizes } from "../../src/images/declared-size.js";
import { DEFAULT_LAYER_LIMITS } from "../../src/images/layers/policy.js";
import { writeLayout } from "./fixtures/oci-writer.js";
import { missingTools, skopeoPush, startRegistry, type TestRegistry } from "./fixtures/registry.js";

const missing = missingTools();
if (missing) console.warn(`[images] skipping declared-size tests: ${missing}`);
const notRoot = process.getuid?.() !== 0 ? "not root (a small tmpfs is mounted as III_HOME)" : undefined;
if (notRoot) console.warn(`[images] skipping the free-space test: ${notRoot}`);

const listOrEmpty = (dir: string) => readdir(dir).catch(() => [] as string[]);

/** An image whose one layer is `bytes` of random (incompressible) data, pushed to `registry` as `name`. */
async function pushRandomImage(work: string, registry: TestRegistry, name: string, bytes: number): Promise<void> {
  const layout = join(work, name.replace(/\W/g, "-"));
  await writeLayout(layout, "1", {
    config: { Cmd: ["/bin/app"] },
    layers: [{ compression: "gzip", entries: [{ name: "data.bin", content: randomBytes(bytes), mode: 0o644 }] }],
  });
  await skopeoPush(`oci:${layout}:1`, registry, `${name}:1`);
}

describe("declared layer sizes are checked before a download", () => {
  const layer = (size: number) => ({ mediaType: "application/vnd.oci.image.layer.v1.tar+gzip", digest: `sha256:${"a".repeat(64)}`, size });

  it("accepts every size an acceptable layer can have, and refuses one past the worst case", () => {
    const limits = { ...DEFAULT_LAYER_LIMITS, maxTotalBytes: 1024 ** 2, maxEntries: 16 };
    // the largest tar the unpack budget accepts, stored without compression (5 bytes of deflate per 64 KiB)
    const largestTar = limits.maxTotalBytes + 16 * 2048 + 1024 ** 2 + 1024;
    expect(() => checkDeclaredLayerSizes([layer(Math.ceil(largestTar * (1 + 5 / 65535)) + 18)], limits, "x")).not.toThrow();
    expect(() => checkDeclaredLayerSizes([layer(10 * largestTar)], limits, "x")).toThrow(/declares \d+ bytes.*not downloaded/);
    // a terabyte-sized declaration against the default limits
    expect(() => checkDeclaredLayerSizes([layer(2 ** 40)], DEFAULT_LAYER_LIMITS, "x")).toThrow(expect.objectContaining({ code: "LayerRejected" }));
  });
});

describe.skipIf(missing !== undefined)("a registry whose manifest declares more than can be taken", () => {
  let work: string;
  let registry: TestRegistry;

  beforeAll(async () => {
    work = await mkdtemp(join(tmpdir(), "iii-img-declared-"));
    registry = await startRegistry();
  });

  afterAll(async () => {
    await registry?.stop();
    await rm(work, { recursive: true, force: true });
  });

  it("a layer larger than the image size limit allows is refused without downloading it", async () => {
    // past 64 KiB of bodies + 8 entries of metadata + the 1 MiB of end-of-archive padding a layer may carry
    await pushRandomImage(work, registry, "test/big", 2 * 1024 * 1024);
    const home = join(work, "home-limit");
    const before = registry.blobGets();
    await expect(
      ensureImage(`${registry.host}/test/big:1`, { home, insecureRegistries: [registry.host], limits: { maxTotalBytes: 64 * 1024, maxEntries: 8 } }),
    ).rejects.toMatchObject({ code: "LayerRejected", message: expect.stringMatching(/declares \d+ bytes, more than any layer .* not downloaded/) });
    expect(registry.blobGets() - before).toBe(1); // the config only
    expect(await listOrEmpty(join(home, "images", "blobs", "sha256"))).toEqual([]);
    expect(await listOrEmpty(join(home, "images", "blobs", "partial"))).toEqual([]);
  });

  describe.skipIf(notRoot !== undefined)("with III_HOME on a 4 MiB filesystem", () => {
    let mnt: string;
    beforeAll(async () => {
      mnt = join(work, "small");
      await mkdir(mnt);
      execFileSync("mount", ["-t", "tmpfs", "-o", "size=4m,mode=0700", "iii-test-small", mnt]);
    });
    afterAll(() => {
      if (mnt) execFileSync("umount", ["-l", mnt]);
    });

    it("an image whose layers cannot fit is refused before a byte of them is written", async () => {
      await pushRandomImage(work, registry, "test/huge", 8 * 1024 * 1024);
      const before = registry.blobGets();
      await expect(ensureImage(`${registry.host}/test/huge:1`, { home: mnt, insecureRegistries: [registry.host] })).rejects.toMatchObject({
        code: "ImagePullFailed",
        message: expect.stringMatching(/needs \d+ bytes of downloads, but only \d+ bytes are free in .*; nothing was downloaded/),
      });
      expect(registry.blobGets() - before).toBe(1); // the config only
      expect(await listOrEmpty(join(mnt, "images", "blobs", "partial"))).toEqual([]);
      expect(await listOrEmpty(join(mnt, "images", "blobs", "sha256"))).toEqual([]);
    });
  });
});
