import { randomBytes } from "node:crypto";
import { mkdtemp, readdir, readFile, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { gunzipSync, gzipSync } from "node:zlib";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { ensureImage } from "../../src/images/index.js";
import { writeLayout } from "./fixtures/oci-writer.js";
import { missingTools, skopeoPush, startRegistry, type TestRegistry } from "./fixtures/registry.js";

const missing = missingTools();
if (missing) console.warn(`[images] skipping tampered-blob tests: ${missing}`);

async function listOrEmpty(dir: string): Promise<string[]> {
  return readdir(dir).catch(() => []);
}

/** Every file under `dir` whose bytes contain `needle`. */
async function filesContaining(dir: string, needle: string): Promise<string[]> {
  const hits: string[] = [];
  for (const entry of await readdir(dir, { recursive: true, withFileTypes: true }).catch(() => [])) {
    if (!entry.isFile()) continue;
    const path = join(entry.parentPath, entry.name);
    if ((await readFile(path)).includes(needle)) hits.push(path);
  }
  return hits;
}

/**
 * A gzip of `tar` exactly `size` bytes long, so that only the digest can tell it from the genuine blob. Recompressing
 * the swapped payload can come out a byte or two shorter or longer (deflate's Huffman codes see other letters):
 * take the first level that is not longer and fill the difference with a gzip header comment (FCOMMENT).
 */
function gzipOfSize(tar: Buffer, size: number): Buffer {
  for (const level of [6, 9, 8, 7, 5, 4, 3, 2, 1]) {
    const z = gzipSync(tar, { level });
    const pad = size - z.length;
    if (pad === 0) return z;
    if (pad < 0) continue;
    const header = Buffer.from(z.subarray(0, 10));
    header[3]! |= 0x10; // FCOMMENT: a NUL-terminated comment follows the 10-byte header
    return Buffer.concat([header, Buffer.alloc(pad - 1, 0x20), Buffer.from([0]), z.subarray(10)]);
  }
  throw new Error(`no gzip level compresses the tampered layer to at most ${size} bytes`);
}

/** What the tampered layer says instead of GENUINE-PAYLOAD. */
const TAMPERED = "PAYLOAD-GENUINE";

describe.skipIf(missing !== undefined)("a registry serving a tampered layer blob", () => {
  let work: string;
  let registry: TestRegistry;

  beforeAll(async () => {
    work = await mkdtemp(join(tmpdir(), "iii-img-tamper-"));
    registry = await startRegistry();
  });

  afterAll(async () => {
    await registry?.stop();
    await rm(work, { recursive: true, force: true });
  });

  it("the pull fails with ImagePullFailed naming the digest, and leaves no layer applied, no blob and no image", async () => {
    // The attack: the registry (or anything between it and us) swaps the layer's bytes for a payload of the same
    // size, so only the digest can tell: a valid gzip of a valid tar. (Random bytes around the payload make
    // deflate store that block verbatim, so the swapped payload recompresses to the same size.)
    const layout = join(work, "app");
    const script = Buffer.concat([Buffer.from("#!/bin/sh\necho GENUINE-PAYLOAD\nexit 0\n# "), randomBytes(64 * 1024)]);
    await writeLayout(layout, "1", {
      config: { Cmd: ["/bin/app"] },
      layers: [{ compression: "gzip", entries: [{ name: "bin/app", content: script, mode: 0o755 }] }],
    });
    await skopeoPush(`oci:${layout}:1`, registry, "test/app:1");
    let tampered = 0;
    const blobs = join(registry.dataDir, "docker", "registry", "v2", "blobs", "sha256");
    for (const prefix of await readdir(blobs)) {
      for (const hex of await readdir(join(blobs, prefix))) {
        const path = join(blobs, prefix, hex, "data");
        const bytes = await readFile(path);
        if (bytes[0] !== 0x1f || bytes[1] !== 0x8b) continue;
        const tar = gunzipSync(bytes);
        const at = tar.indexOf("GENUINE-PAYLOAD");
        if (at < 0) continue;
        // An anagram of the genuine text: the same letters keep deflate's Huffman codes, so the recompressed blob
        // comes out the genuine one's size (other letters made it a byte longer or shorter at every level, now and
        // then: a flaky test, gzipOfSize's padding below only covers shorter).
        tar.write(TAMPERED, at, "latin1");
        const evil = gzipOfSize(tar, bytes.length);
        expect(evil.length).toBe(bytes.length);
        await writeFile(path, evil);
        tampered += 1;
      }
    }
    expect(tampered).toBe(1);

    const home = join(work, "home");
    await expect(ensureImage(`${registry.host}/test/app:1`, { home, insecureRegistries: [registry.host] })).rejects.toMatchObject({
      code: "ImagePullFailed",
      message: expect.stringMatching(/blob sha256:[a-f0-9]{64}: content has digest sha256:[a-f0-9]{64}/),
    });
    const images = join(home, "images");
    expect(await listOrEmpty(join(images, "sha256"))).toEqual([]);
    expect(await listOrEmpty(join(images, "tmp"))).toEqual([]);
    expect(await listOrEmpty(join(images, "blobs", "partial"))).toEqual([]);
    expect(await listOrEmpty(join(images, "blobs", "sha256"))).toEqual([]);
    expect(await filesContaining(home, TAMPERED)).toEqual([]);
    // and the refusal is not cached either: a second pull fails the same way
    await expect(ensureImage(`${registry.host}/test/app:1`, { home, insecureRegistries: [registry.host], pull: "always" })).rejects.toMatchObject({
      code: "ImagePullFailed",
    });
    expect(await listOrEmpty(join(images, "sha256"))).toEqual([]);
  });
});
