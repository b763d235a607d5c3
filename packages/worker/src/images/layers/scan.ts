import { closeSync, openSync, rmSync, writeSync } from "node:fs";
import { IiiError } from "../../errors.js";
import { fileSha256, newSha256 } from "../digest.js";
import { detectFileCompression, pumpLayer, type LayerCompression } from "./decompress.js";
import { DEFAULT_LAYER_LIMITS, LayerBudget, planEntry, type LayerLimits } from "./policy.js";
import { TarReader } from "./tar-reader.js";
import { wrapReadError } from "./tar-entries.js";

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
  /** sha256 of the uncompressed tar this scan read and checked, and its length: what the apply must read again. */
  tarDigest: string;
  tarBytes: number;
}

/**
 * Pass 1, the layer's only decompression: hashes the blob (digest) and the tar (diff_id), checks every header
 * against the policy and the image's budget, and writes the uncompressed tar to `spillPath` so that pass 2
 * applies it without decompressing again. Nothing touches the rootfs here, so a hostile or corrupt layer is
 * refused before a single file is written. Memory stays at two 64 KiB buffers: each step's output is hashed,
 * parsed and written before the next step reuses them.
 */
export async function scanLayer(
  source: LayerSource,
  label: string,
  budget: LayerBudget,
  options: ScanOptions = {},
  spillPath?: string,
): Promise<ScannedLayer> {
  const limits = { ...DEFAULT_LAYER_LIMITS, ...options.limits };
  const policy = { limits, keepSetuid: options.keepSetuid ?? false, label };
  const blobHash = newSha256();
  const diffHash = newSha256();
  const hashBlob = source.digest !== undefined && !source.verified;
  budget.startLayer();
  let entries = 0;
  let tarBytes = 0;
  let tarDigest = "";
  const reader = new TarReader({
    entry(header) {
      budget.account(planEntry(header, policy), label);
      entries += 1;
    },
    data() {},
    end() {},
  });
  const compression = await detectFileCompression(source.path);
  // An uncompressed layer is applied from the blob itself (the apply hashes it again: RootfsBuilder.applyLayer).
  let spill = spillPath !== undefined && compression !== "none" ? openSync(spillPath, "wx", 0o600) : undefined;
  const spilled = spill !== undefined;
  try {
    try {
      await pumpLayer(
        source.path,
        // Uncompressed, the blob is the tar: its digest is the tar's, hashed once below.
        hashBlob && compression !== "none" ? (chunk) => blobHash.update(chunk) : undefined,
        (chunk) => {
          diffHash.update(chunk);
          tarBytes += chunk.length;
          // Parse, then count, then spill: a refused chunk (bytes after the archive's end, a budget overrun) is never
          // written, so the spill stays within the image's budget plus the per-entry allowance (LayerBudget.archive).
          reader.push(chunk);
          budget.archive(chunk.length, label);
          if (spill !== undefined) for (let off = 0; off < chunk.length; ) off += writeSync(spill, chunk, off);
        },
        options.signal ? { compression, signal: options.signal } : { compression },
      );
      reader.finish();
    } catch (error) {
      // A blob that is not what its digest names (a corrupt download, a layout file a racing writer is rewriting)
      // fails as whatever its bytes happen to break first: a bad tar header, a cut archive, a refused entry. Name the
      // cause the user can act on instead, and keep the symptom as the cause.
      if (hashBlob && !options.signal?.aborted) {
        const now = await fileSha256(source.path);
        if (now !== undefined && now !== source.digest) {
          throw new IiiError("ImageInvalid", `${label}: blob digest mismatch: expected ${source.digest}, got ${now}`, { cause: wrapReadError(error, label) });
        }
      }
      throw wrapReadError(error, label);
    }
    // The pump reads the blob to its end, so both hashes cover the whole blob (after the archive's end, only the
    // bounded zero padding TarReader allows).
    const check = (expected: string | undefined, actual: string, what: string) => {
      if (expected && expected !== actual) {
        throw new IiiError("ImageInvalid", `${label}: ${what} mismatch: expected ${expected}, got ${actual}`);
      }
    };
    tarDigest = `sha256:${diffHash.digest("hex")}`;
    if (hashBlob) check(source.digest, compression === "none" ? tarDigest : `sha256:${blobHash.digest("hex")}`, "blob digest");
    check(source.diffId, tarDigest, "uncompressed layer digest (diff_id)");
  } catch (error) {
    if (spill !== undefined) {
      closeSync(spill);
      spill = undefined;
      rmSync(spillPath!, { force: true });
    }
    throw error;
  } finally {
    if (spill !== undefined) closeSync(spill);
  }
  return { compression, entries, tarPath: spilled ? spillPath! : source.path, spilled, tarDigest, tarBytes };
}
