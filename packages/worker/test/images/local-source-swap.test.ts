import { execFileSync } from "node:child_process";
import { createHash } from "node:crypto";
import { readdirSync, readFileSync, readlinkSync, writeFileSync } from "node:fs";
import { mkdir, mkdtemp, readdir, readFile, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { ImageStore } from "../../src/images/cache/store.js";
import { ensureImage } from "../../src/images/index.js";
import { applyLayers } from "../../src/images/layers/apply.js";
import { tarBytes, writeLayout } from "./fixtures/oci-writer.js";

/**
 * An `oci:` layout is read twice: the scan verifies each layer against its digest, the apply reads it again (an
 * uncompressed layer is not copied in between). Whoever can change the layout's files in between puts content the
 * digest never covered into the cache, under the digest: a later pull of that digest (any reference, any project)
 * gets it. A FIFO at the layer's name makes the swap deterministic: good bytes on the first open, others on the second.
 */
describe("oci: layout files that change between the digest check and the unpack", () => {
  let work: string;
  beforeAll(async () => {
    work = await mkdtemp(join(tmpdir(), "iii-img-swap-"));
  });
  afterAll(async () => {
    await rm(work, { recursive: true, force: true });
  });

  it.skipIf(process.getuid?.() !== 0)("an uncompressed layer rewritten by another user after its digest was checked is not unpacked under the digest", async () => {
    const layout = join(work, "layout");
    const filler = Buffer.alloc(48 * 1024 * 1024, 0x61);
    const good = await tarBytes([{ name: "app.txt", content: "the image as published\n" }]);
    const evil = await tarBytes([{ name: "app.txt", content: "planted after the check\n" }]);
    expect(evil.length).toBe(good.length);
    await writeLayout(layout, "1", {
      layers: [
        { tar: await tarBytes([{ name: "filler.bin", content: filler }]), compression: "none" },
        { tar: good, compression: "none" },
      ],
    });
    const blob = join(layout, "blobs", "sha256", createHash("sha256").update(good).digest("hex"));
    // The layout is the other user's (uid 65534); this process plays them rewriting it.
    execFileSync("chown", ["-R", "65534:65534", layout]);
    // The attacker: once the scan has read the second layer (it was open, now closed), rewrites it in place while the
    // first, large layer is still being applied.
    let seenOpen = false;
    let swapped = false;
    const isOpen = () => readdirSync("/proc/self/fd").some((fd) => {
      try {
        return readlinkSync(`/proc/self/fd/${fd}`) === blob;
      } catch {
        return false;
      }
    });
    const watcher = setInterval(() => {
      if (swapped) return;
      if (isOpen()) seenOpen = true;
      else if (seenOpen) {
        writeFileSync(blob, evil);
        swapped = true;
      }
    }, 1);
    let outcome: string;
    try {
      const image = await ensureImage(`oci:${layout}:1`, { home: join(work, "home") });
      outcome = await readFile(join(image.rootfs, "app.txt"), "utf8");
    } catch (error) {
      outcome = (error as Error).message;
    } finally {
      clearInterval(watcher);
    }
    expect(outcome).not.toBe("planted after the check\n");
    expect(outcome).toMatch(/oci:.*: .* belongs to uid 65534, so the layer could change after its digest is checked; copy the layout to a directory of yours first/);
  });

  // The real fix: the apply hashes what it reads of a layer it did not copy and refuses the image when that is not
  // what the scan checked. The layout here is this user's own (the mitigation above lets it through).
  const layerWith = (content: string) => tarBytes([{ name: "app.txt", content }]);

  it("applyLayers: a layer rewritten after its scan and before its apply fails the image, and the rootfs is emptied", async () => {
    const dir = await mkdtemp(join(work, "apply-"));
    const good = await layerWith("the image as published\n");
    const evil = await layerWith("planted after the check\n");
    const digest = (b: Buffer) => `sha256:${createHash("sha256").update(b).digest("hex")}`;
    const blobs = [join(dir, "layer0.tar"), join(dir, "layer1.tar")];
    writeFileSync(blobs[0]!, good);
    writeFileSync(blobs[1]!, await tarBytes([{ name: "other.txt", content: "x" }]));
    const root = join(dir, "rootfs");
    await mkdir(root);
    // ready(i + 1) runs once layer i is scanned (checked) and before layer i is applied: the attacker's moment.
    const ready = async (i: number) => {
      if (i === 1) writeFileSync(blobs[0]!, evil);
    };
    const layers = blobs.map((path, i) => ({ path, digest: digest(i === 0 ? good : (readFileSync(path) as Buffer)) }));
    const failed = await applyLayers(root, layers, {}, ready).then(
      () => undefined,
      (error: unknown) => error,
    );
    expect(failed).toMatchObject({ code: "ImageInvalid", message: expect.stringMatching(/^layer 1\/2 \(sha256:[0-9a-f]{12}\): the layer file .*layer0\.tar changed while it was unpacked \(checked as sha256:[0-9a-f]{64}, read now as sha256:[0-9a-f]{64}\); nothing was cached/) });
    expect(await readdir(root)).toEqual([]);
    // Longer than what was checked: refused as soon as the apply reads past it, not at the end.
    writeFileSync(blobs[0]!, good);
    const longer = Buffer.concat([await layerWith("planted after the check\n"), Buffer.alloc(1 << 20)]);
    const grown = await applyLayers(root, layers, {}, async (i) => {
      if (i === 1) writeFileSync(blobs[0]!, longer);
    }).catch((error: unknown) => error);
    expect(grown).toMatchObject({ code: "ImageInvalid", message: expect.stringMatching(/changed while it was unpacked .*it is longer than when its digest was checked/) });
    expect(await readdir(root)).toEqual([]);
    // Unchanged, the same layers apply.
    writeFileSync(blobs[0]!, good);
    await applyLayers(root, layers, {}, async () => {});
    expect(await readFile(join(root, "app.txt"), "utf8")).toBe("the image as published\n");
  });

  it("ensureImage: a racing writer rewriting a layer of the user's own layout between check and unpack fails the pull, and nothing is cached", async () => {
    const layout = join(work, "own-layout");
    // 512 KiB: the scan reads it in several steps, returning to the event loop in between (pumpLayer).
    const good = await layerWith(`the image as published\n${"a".repeat(512 * 1024)}`);
    const evil = await layerWith(`planted after the check\n${"a".repeat(512 * 1024)}`);
    await writeLayout(layout, "1", {
      layers: [
        { tar: await tarBytes([{ name: "filler.bin", content: Buffer.alloc(48 * 1024 * 1024, 0x61) }]), compression: "none" },
        { tar: good, compression: "none" },
      ],
    });
    const blob = join(layout, "blobs", "sha256", createHash("sha256").update(good).digest("hex"));
    // The writer: once the scan has been reading layer 2 (a descriptor on it past offset 0: the compression sniff reads
    // at offset 0, the scan's pump sequentially) and is done with it (closed), rewrites it in place while the large
    // layer 1 is still being applied.
    let seenReading = false;
    let swapped = false;
    const reading = () => {
      let open = false;
      for (const fd of readdirSync("/proc/self/fd")) {
        try {
          if (readlinkSync(`/proc/self/fd/${fd}`) !== blob) continue;
          open = true;
          if (Number(/^pos:\s*(\d+)/m.exec(readFileSync(`/proc/self/fdinfo/${fd}`, "utf8"))?.[1]) > 0) seenReading = true;
        } catch {
          // closed meanwhile
        }
      }
      return open;
    };
    const watcher = setInterval(() => {
      if (swapped) return;
      if (!reading() && seenReading) {
        writeFileSync(blob, evil);
        swapped = true;
      }
    }, 1);
    const home = join(work, "home-own");
    let failed: unknown;
    try {
      const image = await ensureImage(`oci:${layout}:1`, { home });
      failed = await readFile(join(image.rootfs, "app.txt"), "utf8");
    } catch (error) {
      failed = error;
    } finally {
      clearInterval(watcher);
    }
    expect(swapped).toBe(true);
    expect(failed).toMatchObject({ code: "ImageInvalid", message: expect.stringMatching(/^layer 2\/2 \(sha256:[0-9a-f]{12}\): the layer file .* changed while it was unpacked/) });
    const store = new ImageStore(home);
    expect(await store.listDigests()).toEqual([]);
    expect(await store.readTag(`oci:${layout}:1`)).toBeUndefined();
    expect(await readdir(join(home, "images", "tmp"))).toEqual([]);
  });
});
