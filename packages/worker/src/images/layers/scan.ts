import { createWriteStream, type WriteStream } from "node:fs";
import { rm } from "node:fs/promises";
import { finished } from "node:stream/promises";
import { IiiError } from "../../errors.js";
import { streamed } from "../buffer-churn.js";
import { newSha256 } from "../digest.js";
import { openLayerFile, type LayerCompression } from "./decompress.js";
import { DEFAULT_LAYER_LIMITS, LayerBudget, planEntry, type LayerLimits } from "./policy.js";
import { forEachEntry, wrapReadError } from "./tar-entries.js";

export interface LayerSource {
  /** Path of the (possibly compressed) layer blob. */
  path: string;
  /** Expected blob digest; checked while scanning unless `verified`. */
  digest?: string;
  /** The blob was verified against `digest` when it was stored (registry downloads): skip hashing it again. */
  verified?: boolean;
  /** Expected uncompressed digest (the image config's rootfs.diff_ids entry); checked while scanning. */
  diffId?: string;
}

export interface ScanOptions {
  limits?: Partial<LayerLimits>;
  keepSetuid?: boolean;
  signal?: AbortSignal;
}

export interface ScannedLayer {
  compression: LayerCompression;
  entries: number;
  /** The uncompressed tar to apply: the spill file of a compressed layer, else the blob itself. */
  tarPath: string;
  /** `tarPath` is a spill file this scan wrote (the caller removes it). */
  spilled: boolean;
}

/**
 * Pass 1, the layer's only decompression: hashes the blob (digest) and the tar (diff_id), checks every header
 * against the policy and the image's budget, and writes the uncompressed tar to `spillPath` so that pass 2
 * applies it without decompressing again. Nothing touches the rootfs here, so a hostile or corrupt layer is
 * refused before a single file is written. Memory stays at a few stream buffers: the spill file and the tar
 * parser pull at the decoder's pace (backpressure), and nothing is kept once written.
 */
export async function scanLayer(
  source: LayerSource,
  label: string,
  budget: LayerBudget,
  options: ScanOptions = {},
  spillPath?: string,
): Promise<ScannedLayer> {
  const limits = { ...DEFAULT_LAYER_LIMITS, ...options.limits };
  const opened = await openLayerFile(source.path);
  const blobHash = newSha256();
  const diffHash = newSha256();
  const hashBlob = source.digest !== undefined && !source.verified;
  opened.raw.on("data", (chunk: Buffer) => {
    if (hashBlob) blobHash.update(chunk);
    streamed(chunk.length);
  });
  opened.tar.on("data", (chunk: Buffer) => {
    diffHash.update(chunk);
    streamed(chunk.length);
  });
  let spill: WriteStream | undefined;
  if (spillPath !== undefined && opened.compression !== "none") {
    spill = createWriteStream(spillPath, { flags: "wx", mode: 0o600, highWaterMark: 1 << 16 });
    spill.on("error", (error) => opened.tar.destroy(error));
    opened.tar.pipe(spill);
  }
  budget.startLayer();
  let entries = 0;
  try {
    try {
      await forEachEntry(opened.tar, options.signal, async (header, body) => {
        const planned = planEntry(header, { limits, keepSetuid: options.keepSetuid ?? false, label });
        budget.account(planned, label);
        entries += 1;
        body.resume();
        await new Promise<void>((resolve, reject) => {
          body.on("end", resolve);
          body.on("error", reject);
        });
      });
      if (spill) await finished(spill);
    } catch (error) {
      throw wrapReadError(error, label);
    }
    // tar-stream consumes everything after the end-of-archive blocks too, so both hashes cover the whole blob.
    const check = (expected: string | undefined, actual: string, what: string) => {
      if (expected && expected !== actual) {
        throw new IiiError("ImageInvalid", `${label}: ${what} mismatch: expected ${expected}, got ${actual}`);
      }
    };
    if (hashBlob) check(source.digest, `sha256:${blobHash.digest("hex")}`, "blob digest");
    check(source.diffId, `sha256:${diffHash.digest("hex")}`, "uncompressed layer digest (diff_id)");
  } catch (error) {
    if (spill) {
      spill.destroy();
      await rm(spillPath!, { force: true });
    }
    throw error;
  }
  return { compression: opened.compression, entries, tarPath: spill ? spillPath! : source.path, spilled: spill !== undefined };
}
