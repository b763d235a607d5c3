import { mkdir, mkdtemp, readdir, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { applyLayers, ensureImage } from "../../src/images/index.js";
import { writeManyEntriesLayer, ustarHeader } from "./fixtures/fast-tar.js";
import { tarBytes, writeLayout, type TarEntrySpec } from "./fixtures/oci-writer.js";
import { describeTree } from "./fixtures/tree.js";

describe("hostile layers are refused and nothing outside the rootfs changes", () => {
  let work: string;
  let canary: string;
  let snapshot: Awaited<ReturnType<typeof describeTree>>;
  let n = 0;

  beforeAll(async () => {
    work = await mkdtemp(join(tmpdir(), "iii-img-hostile-"));
    canary = join(work, "canary");
    await mkdir(join(canary, "sub"), { recursive: true });
    await writeFile(join(canary, "keep"), "untouched");
    await writeFile(join(work, "shadow"), "secret");
    snapshot = await describeTree(canary);
  });

  afterAll(async () => {
    expect(await describeTree(canary)).toEqual(snapshot);
    await rm(work, { recursive: true, force: true });
  });

  /** Applies layers into a fresh rootfs next to the canary. */
  async function apply(layers: Array<TarEntrySpec[] | Buffer>, limits = {}) {
    const dir = join(work, `case-${n++}`);
    const root = join(dir, "rootfs");
    await mkdir(root, { recursive: true });
    const paths = [];
    for (const [i, layer] of layers.entries()) {
      const path = join(dir, `layer${i}.tar`);
      await writeFile(path, Buffer.isBuffer(layer) ? layer : await tarBytes(layer));
      paths.push({ path });
    }
    const result = applyLayers(root, paths, { limits });
    return { root, result };
  }

  async function expectRejected(layers: Array<TarEntrySpec[] | Buffer>, message: RegExp, limits = {}) {
    const { result } = await apply(layers, limits);
    await expect(result).rejects.toMatchObject({ code: "LayerRejected", message: expect.stringMatching(message) });
    expect(await describeTree(canary)).toEqual(snapshot);
  }

  const escape = "../".repeat(12);

  it("absolute path", async () => {
    await expectRejected([[{ name: `${canary}/pwned`, content: "x" }]], /layer 1\/1: entry ".*canary\/pwned" rejected: absolute path/);
  });

  it("../ traversal", async () => {
    await expectRejected([[{ name: `a/${escape}${canary.slice(1)}/pwned`, content: "x" }]], /rejected: path traversal \(\.\.\)/);
  });

  it("a symlink, then a file written through it (same layer and across layers)", async () => {
    const link = { name: "esc", type: "symlink" as const, linkname: `${escape}${canary.slice(1)}` };
    await expectRejected([[link, { name: "esc/pwned", content: "x" }]], /entry "esc\/pwned" rejected: its path goes through a symlink that points outside the rootfs/);
    await expectRejected([[link], [{ name: "esc/sub/pwned", content: "x" }]], /layer 2\/2: entry "esc\/sub\/pwned" rejected: .*points outside/);
    await expectRejected([[{ name: "a/", type: "directory" }, { name: "a/up", type: "symlink", linkname: "../.." }], [{ name: "a/up/pwned", content: "x" }]], /points outside/);
    // an absolute target means the guest's own path: it is resolved inside the rootfs, never on the host
    const { root, result } = await apply([[{ name: "abs", type: "symlink", linkname: canary }, { name: "abs/pwned", content: "inside" }]]);
    await result;
    expect(Object.keys(await describeTree(root))).toContain(`${canary.slice(1)}/pwned`);
  });

  it("symlink loops and hardlinks to directories", async () => {
    await expectRejected([[{ name: "loop", type: "symlink", linkname: "/loop" }, { name: "loop/f", content: "x" }]], /entry "loop\/f" rejected: too many levels of symbolic links/);
    await expectRejected([[{ name: "d/", type: "directory" }, { name: "dl", type: "link", linkname: "d" }]], /entry "dl" rejected: hardlink to a directory/);
  });

  it("hardlink to /etc/shadow, outside via .., and via an escaping symlink", async () => {
    await expectRejected([[{ name: "shadow", type: "link", linkname: "/etc/shadow" }]], /entry "shadow" rejected: hardlink to "\/etc\/shadow" outside the layer/);
    await expectRejected([[{ name: "shadow", type: "link", linkname: `${escape}${work.slice(1)}/shadow` }]], /hardlink to .* outside the layer \(\.\.\)/);
    await expectRejected(
      [[{ name: "up", type: "symlink", linkname: `${escape}${work.slice(1)}` }, { name: "shadow", type: "link", linkname: "up/shadow" }]],
      /entry "shadow" rejected: its path goes through a symlink that points outside/,
    );
    await expectRejected([[{ name: "h", type: "symlink", linkname: "/etc" }, { name: "shadow", type: "link", linkname: "h/shadow" }]], /hardlink target "h\/shadow" does not exist in the rootfs/);
  });

  it("device nodes are not created (the guest kernel provides /dev)", async () => {
    const { root, result } = await apply([[{ name: "dev/", type: "directory" }, { name: "dev/sda", type: "block-device", devmajor: 8, devminor: 0 }, { name: "dev/mem", type: "character-device", devmajor: 1, devminor: 1 }]]);
    const [report] = await result;
    expect(report!.skipped).toEqual([expect.stringMatching(/^dev\/sda: device node/), expect.stringMatching(/^dev\/mem: device node/)]);
    expect(await readdir(join(root, "dev"))).toEqual([]);
  });

  it("a 10 GiB sparse file and a 10 GiB declared file exceed the per-file limit", async () => {
    const size = String(10 * 1024 ** 3);
    await expectRejected(
      [[{ name: "sparse", content: Buffer.alloc(512), pax: { "GNU.sparse.major": "1", "GNU.sparse.minor": "0", "GNU.sparse.name": "sparse", "GNU.sparse.realsize": size } }]],
      /entry "sparse" rejected: sparse file of 10737418240 bytes exceeds the per-file limit of 5368709120 bytes/,
    );
    // a header that declares 10 GiB, followed by almost no data: refused from the header alone
    const truncated = Buffer.concat([ustarHeader("huge", { size: 10 * 1024 ** 3 }), Buffer.alloc(4096)]);
    await expectRejected([truncated], /entry "huge" rejected: file of 10737418240 bytes exceeds the per-file limit/);
    await expectRejected([[{ name: "a", content: Buffer.alloc(600) }, { name: "b", content: Buffer.alloc(600) }]], /entry "b" rejected: the image exceeds the total size limit of 1000 bytes/, { maxTotalBytes: 1000 });
  });

  it("path depth 1,000", async () => {
    await expectRejected([[{ name: `${"d/".repeat(999)}f`, content: "x" }]], /rejected: path depth exceeds the limit of 128 components/);
  });

  it("2 million entries, refused before a single file is written", async () => {
    const dir = join(work, "many");
    await mkdir(join(dir, "rootfs"), { recursive: true });
    await writeManyEntriesLayer(join(dir, "layer.tar.zst"), 2_000_000);
    const started = Date.now();
    await expect(applyLayers(join(dir, "rootfs"), [{ path: join(dir, "layer.tar.zst") }])).rejects.toMatchObject({
      code: "LayerRejected",
      message: expect.stringMatching(/layer 1\/1: entry "d0\/f1000000" rejected: the layer has more than 1000000 entries/),
    });
    expect(await readdir(join(dir, "rootfs"))).toEqual([]);
    console.log(`[images] 2M-entry layer refused in ${Date.now() - started} ms`);
  }, 120_000);

  it("a layer blob that does not match its digest, or is truncated, is refused before it is applied", async () => {
    const layout = join(work, "tampered");
    const home = join(work, "home-tampered");
    await writeLayout(layout, "1", { layers: [{ entries: [{ name: "f", content: "original" }] }] });
    const { readdir: list, readFile, writeFile: write, stat: statFile } = await import("node:fs/promises");
    const { gunzipSync, gzipSync } = await import("node:zlib");
    const blobs = join(layout, "blobs", "sha256");
    for (const name of await list(blobs)) {
      const bytes = await readFile(join(blobs, name));
      if (bytes[0] !== 0x1f) continue;
      const tampered = gzipSync(Buffer.from(gunzipSync(bytes).toString("latin1").replace("original", "tampered"), "latin1"));
      await write(join(blobs, name), tampered);
      await expect(ensureImage(`oci:${layout}:1`, { home })).rejects.toThrow(/layer 1\/1 \(sha256:[a-f0-9]{12}\): blob digest mismatch/);
      await write(join(blobs, name), bytes.subarray(0, bytes.length - 20));
      await expect(ensureImage(`oci:${layout}:1`, { home })).rejects.toMatchObject({ code: "ImageInvalid" });
      expect((await statFile(join(blobs, name))).size).toBe(bytes.length - 20);
    }
    expect(await readdir(join(home, "images", "sha256"))).toEqual([]);
  });

  it("through ensureImage: a refused image leaves no image and no staging dir in the cache", async () => {
    const layout = join(work, "hostile-layout");
    const home = join(work, "home");
    await writeLayout(layout, "1", {
      layers: [{ entries: [{ name: "ok", content: "fine" }] }, { entries: [{ name: "esc", type: "symlink", linkname: `${escape}${canary.slice(1)}` }, { name: "esc/pwned", content: "x" }] }],
    });
    await expect(ensureImage(`oci:${layout}:1`, { home })).rejects.toThrow(/layer 2\/2 \(sha256:[a-f0-9]{12}\): entry "esc\/pwned" rejected/);
    expect(await readdir(join(home, "images", "sha256"))).toEqual([]);
    expect(await readdir(join(home, "images", "tmp"))).toEqual([]);
  });
});
