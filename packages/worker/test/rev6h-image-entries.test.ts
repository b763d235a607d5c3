import { mkdtemp, readdir, rm } from "node:fs/promises";
import { execFileSync } from "node:child_process";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { ensureImage } from "../src/images/index.js";
import { checkDeclaredLayerSizes } from "../src/images/declared-size.js";
import { DEFAULT_LAYER_LIMITS } from "../src/images/layers/policy.js";
import { writeLayout } from "./images/fixtures/oci-writer.js";
import { missingTools, skopeoPush, startRegistry, type TestRegistry } from "./images/fixtures/registry.js";

// Review rev6h: the entry limit was per layer (1,000,000), and nothing bounded the number of layers, so an image's
// entries (each one an inode on the host's disk, in III_HOME/images) were unbounded: 17 layers of a million empty
// files each take every inode of a 16.7M-inode disk. Scaled down here (64 entries a layer, 1,000 an image) and
// pulled for real from a local registry on loopback: 30 layers of 50 files each are refused at the 21st layer, and
// nothing of the image is left in the cache.

const missing = missingTools();
if (missing) console.warn(`[rev6h-image-entries] skipped: ${missing}`);

const LAYERS = 30;
const DEEP_ENTRIES = 100;
const DEPTH = 100;
const PER_LAYER = 50;

describe.skipIf(missing !== undefined)("an image's entries are bounded over all its layers, not only per layer", () => {
  let work: string;
  let registry: TestRegistry;

  beforeAll(async () => {
    work = await mkdtemp(join(tmpdir(), "iii-rev6h-entries-"));
    registry = await startRegistry();
    const layout = join(work, "layout");
    await writeLayout(layout, "1", {
      config: { Cmd: ["/bin/app"] },
      layers: Array.from({ length: LAYERS }, (_, l) => ({
        compression: "gzip" as const,
        entries: Array.from({ length: PER_LAYER }, (_, i) => ({ name: `l${l}/f${i}`, content: Buffer.alloc(0), mode: 0o644 })),
      })),
    });
    await skopeoPush(`oci:${layout}:1`, registry, "test/many-layers:1");
    // one layer of 100 entries, each a file 100 directories deep under a name of its own: 10,000 directories
    const deep = join(work, "deep");
    await writeLayout(deep, "1", {
      config: { Cmd: ["/bin/app"] },
      layers: [{ compression: "gzip", entries: Array.from({ length: DEEP_ENTRIES }, (_, i) => ({ name: `e${i}/${"a/".repeat(DEPTH - 1)}f`, content: Buffer.alloc(0) })) }],
    });
    await skopeoPush(`oci:${deep}:1`, registry, "test/deep:1");
  }, 120_000);

  afterAll(async () => {
    await registry?.stop();
    if (work) await rm(work, { recursive: true, force: true });
  });

  it("many layers, each within the per-layer limit, are refused past the image's entry limit; nothing is cached", async () => {
    const home = join(work, "home");
    const limits = { maxEntries: 64, maxImageEntries: 1000 };
    await expect(ensureImage(`${registry.host}/test/many-layers:1`, { home, insecureRegistries: [registry.host], limits })).rejects.toMatchObject({
      code: "LayerRejected",
      // the scan counts entries (it would refuse layer 21); the apply counts what they make, a directory `lN` each too
      message: expect.stringMatching(/layer 2[01]\/30 .*(the image has more than 1000 entries over all its layers|the image makes more than 1000 files and directories)/),
    });
    expect(await readdir(join(home, "images", "sha256")).catch(() => [] as string[])).toEqual([]);
  }, 120_000);

  it("the same image within the limit unpacks", async () => {
    const home = join(work, "home-ok");
    const ensured = await ensureImage(`${registry.host}/test/many-layers:1`, { home, insecureRegistries: [registry.host], limits: { maxEntries: 64, maxImageEntries: 2000 } });
    expect((await readdir(join(ensured.rootfs, "l29"))).length).toBe(PER_LAYER);
  }, 120_000);

  it("the default image limit is one entry per 8 KiB of the image's size budget, and declared sizes use it", () => {
    expect(DEFAULT_LAYER_LIMITS.maxImageEntries).toBe(DEFAULT_LAYER_LIMITS.maxTotalBytes / 8192);
    // 2,000 declared layers of 2 GiB of metadata allowance each no longer add up to a bound past the image's
    const layer = { mediaType: "application/vnd.oci.image.layer.v1.tar+gzip", digest: `sha256:${"0".repeat(64)}`, size: 64 * 1024 ** 2 };
    expect(() => checkDeclaredLayerSizes(Array.from({ length: 2000 }, () => layer), DEFAULT_LAYER_LIMITS, "x")).toThrow(/not downloaded/);
  });

  it("the parent directories an entry's path implies count too: 100 entries 100 deep are refused under a 1,000 limit", async () => {
    const home = join(work, "home-deep");
    const limits = { maxEntries: 1000, maxImageEntries: 1000, maxDepth: 128 };
    await expect(ensureImage(`${registry.host}/test/deep:1`, { home, insecureRegistries: [registry.host], limits })).rejects.toMatchObject({
      code: "LayerRejected",
      message: expect.stringMatching(/makes more than 1000 files and directories/),
    });
    expect(await readdir(join(home, "images", "sha256")).catch(() => [] as string[])).toEqual([]);
    // and within a limit that has room, it unpacks: every implied directory is there
    const ensured = await ensureImage(`${registry.host}/test/deep:1`, { home: join(work, "home-deep-ok"), insecureRegistries: [registry.host], limits: { ...limits, maxImageEntries: 20_000 } });
    const dirs = Number(execFileSync("find", [ensured.rootfs, "-mindepth", "1", "-type", "d"], { encoding: "utf8", maxBuffer: 64 * 1024 ** 2 }).trim().split("\n").length);
    expect(dirs).toBe(DEEP_ENTRIES * DEPTH);
  }, 120_000);
});
