import { existsSync, mkdtempSync, readdirSync, readlinkSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { pruneImages } from "../../src/catalog/catalog.js";
import { holdImagesInUse, withImagesInUse } from "../../src/images/cache/in-use-lock.js";
import { ImageStore } from "../../src/images/cache/store.js";
import { ensureImage } from "../../src/images/index.js";
import { tarBytes, writeLayout } from "./fixtures/oci-writer.js";

/** This process's descriptors open on the cache's in-use lock file: one per hold. */
function lockOpens(home: string): number {
  const lock = join(home, "locks", "images-in-use.lock");
  return readdirSync("/proc/self/fd").filter((fd) => {
    try {
      return readlinkSync(`/proc/self/fd/${fd}`) === lock;
    } catch {
      return false;
    }
  }).length;
}

/**
 * prune against a pull or a start in progress: what they have put in the cache is named by no worker yet (a blob
 * just downloaded, an image resolved before its launch.json), so a prune in between deleted it under them.
 */
describe("prune while the image cache is in use", () => {
  const home = mkdtempSync(join(tmpdir(), "iii-prune-in-use-"));
  afterAll(() => rmSync(home, { recursive: true, force: true }));

  it("removes nothing while a pull or start holds the cache, and prunes as before once it is done", async () => {
    const store = new ImageStore(home);
    await store.init();
    // A layer a pull has just downloaded: no image record names it yet.
    const blob = `sha256:${"ab".repeat(32)}`;
    writeFileSync(store.blobPath(blob), "layer bytes");
    const pull = await holdImagesInUse(home);
    try {
      await expect(pruneImages([], { home })).rejects.toMatchObject({ code: "StateLockTimeout", message: expect.stringMatching(/a pull or a start is using the image cache; nothing was removed/) });
      expect(existsSync(store.blobPath(blob))).toBe(true);
      // A dry run only reads: it answers meanwhile.
      expect((await pruneImages([], { home, dryRun: true })).removedBlobs).toBe(1);
      // Two users of the cache at once are fine (shared).
      const start = await holdImagesInUse(home);
      await start.release();
    } finally {
      await pull.release();
    }
    expect((await pruneImages([], { home })).removedBlobs).toBe(1);
    expect(existsSync(store.blobPath(blob))).toBe(false);
  });

  it("a start holds the cache once: its ensureImage runs under the start's hold, and prune stays out until the start returns", async () => {
    const store = new ImageStore(home);
    await store.init();
    const layout = join(home, "..", `${home.split("/").pop()}-layout`);
    await writeLayout(layout, "1", { layers: [{ tar: await tarBytes([{ name: "app.txt", content: "app\n" }]), compression: "none" }] });
    try {
      const prune = () => pruneImages([], { home });
      await withImagesInUse(home, async () => {
        expect(lockOpens(home)).toBe(1);
        await withImagesInUse(home, async () => {
          expect(lockOpens(home)).toBe(1);
          await expect(prune()).rejects.toMatchObject({ code: "StateLockTimeout" });
        });
        // The image is resolved (ensureImage, nested) but not yet named by a launch.json: prune must still wait.
        const image = await ensureImage(`oci:${layout}:1`, { home });
        expect(lockOpens(home)).toBe(1);
        await expect(prune()).rejects.toMatchObject({ code: "StateLockTimeout" });
        expect(existsSync(image.rootfs)).toBe(true);
      });
      expect(lockOpens(home)).toBe(0);
      // Another home is another lock: not covered by this hold.
      const other = mkdtempSync(join(tmpdir(), "iii-prune-in-use-other-"));
      try {
        await withImagesInUse(home, async () => {
          await withImagesInUse(other, async () => expect(lockOpens(other)).toBe(1));
        });
      } finally {
        rmSync(other, { recursive: true, force: true });
      }
      expect((await prune()).removed).toHaveLength(1);
    } finally {
      rmSync(layout, { recursive: true, force: true });
    }
  });

  it("keeps the layer blob a worker's pulled WASM artifact runs from (its image is wasm:<blob path>)", async () => {
    const store = new ImageStore(home);
    await store.init();
    const artifact = `sha256:${"cd".repeat(32)}`;
    const other = `sha256:${"ef".repeat(32)}`;
    writeFileSync(store.blobPath(artifact), "\0asm");
    writeFileSync(store.blobPath(other), "\0asm");
    const result = await pruneImages([`wasm:${store.blobPath(artifact)}`, `wasm:/elsewhere/${"ef".repeat(32)}`], { home });
    expect(result.removedBlobs).toBe(1);
    expect(existsSync(store.blobPath(artifact))).toBe(true);
    expect(existsSync(store.blobPath(other))).toBe(false);
  });
});
