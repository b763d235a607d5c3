import { existsSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { pruneImages } from "../../src/catalog/catalog.js";
import { holdImagesInUse } from "../../src/images/cache/in-use-lock.js";
import { ImageStore } from "../../src/images/cache/store.js";

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
