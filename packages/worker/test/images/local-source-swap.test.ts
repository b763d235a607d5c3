import { execFileSync } from "node:child_process";
import { createHash } from "node:crypto";
import { readdirSync, readlinkSync, writeFileSync } from "node:fs";
import { mkdtemp, readFile, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { ensureImage } from "../../src/images/index.js";
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
});
