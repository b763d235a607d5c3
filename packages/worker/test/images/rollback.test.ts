import { mkdir, mkdtemp, readdir, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { gzipSync } from "node:zlib";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { applyLayers } from "../../src/images/index.js";
import { sha256Digest } from "../../src/images/digest.js";
import { tarBytes, type TarEntrySpec } from "./fixtures/oci-writer.js";
import { describeTree } from "./fixtures/tree.js";

describe("one decompression per layer, and a failed layer is rolled back", () => {
  let work: string;
  let n = 0;

  beforeAll(async () => {
    work = await mkdtemp(join(tmpdir(), "iii-img-rollback-"));
  });

  afterAll(async () => {
    await rm(work, { recursive: true, force: true });
  });

  /** gzip layers in a fresh dir; `digests` overrides a layer's declared digest. */
  async function layers(specs: TarEntrySpec[][], digests: Record<number, string> = {}) {
    const dir = join(work, `case-${n++}`);
    const root = join(dir, "rootfs");
    await mkdir(root, { recursive: true });
    const sources = [];
    for (const [i, entries] of specs.entries()) {
      const blob = gzipSync(await tarBytes(entries));
      const path = join(dir, `layer${i}.tar.gz`);
      await writeFile(path, blob);
      sources.push({ path, digest: digests[i] ?? sha256Digest(blob) });
    }
    return { dir, root, sources };
  }

  it("gzip layers apply from their one decompression, and the spill files are gone afterwards", async () => {
    const { dir, root, sources } = await layers([
      [{ name: "etc/", type: "directory" }, { name: "etc/a", content: "one" }, { name: "big", content: Buffer.alloc(3 << 20, 7) }],
      [{ name: "etc/b", content: "two" }, { name: "etc/.wh.a" }],
    ]);
    const reports = await applyLayers(root, sources);
    expect(reports.map((r) => r.compression)).toEqual(["gzip", "gzip"]);
    const tree = await describeTree(root);
    expect(Object.keys(tree).sort()).toEqual(["big", "etc", "etc/b"]);
    expect(await readdir(dir)).toEqual(expect.not.arrayContaining([expect.stringMatching(/^\.iii-layers-/)]));
  });

  it("a blob digest mismatch in layer 2 after layer 1 was applied: typed error, the target emptied, no spill left", async () => {
    const { dir, root, sources } = await layers(
      [[{ name: "good", content: "applied first" }], [{ name: "evil", content: "wrong layer" }]],
      { 1: `sha256:${"0".repeat(64)}` },
    );
    await expect(applyLayers(root, sources)).rejects.toMatchObject({
      code: "ImageInvalid",
      message: expect.stringMatching(/^layer 2\/2 \(sha256:000000000000\): blob digest mismatch/),
    });
    expect(await readdir(root)).toEqual([]);
    expect((await readdir(dir)).sort()).toEqual(["layer0.tar.gz", "layer1.tar.gz", "rootfs"]);
  });

  it("a layer refused while it is being applied (a path through an escaping symlink) leaves the target empty", async () => {
    const { root, sources } = await layers([
      [{ name: "usr/", type: "directory" }, { name: "usr/ok", content: "fine" }],
      [{ name: "up", type: "symlink", linkname: "../../.." }, { name: "also-written", content: "x" }, { name: "up/pwned", content: "x" }],
    ]);
    await expect(applyLayers(root, sources)).rejects.toMatchObject({ code: "LayerRejected", message: expect.stringMatching(/layer 2\/2 .*"up\/pwned" rejected/) });
    expect(await readdir(root)).toEqual([]);
  });
});
