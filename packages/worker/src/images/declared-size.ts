import { statfs } from "node:fs/promises";
import { IiiError } from "../errors.js";
import type { Descriptor } from "./oci/manifest.js";
import { TAR_BYTES_PER_ENTRY, TAR_BYTES_PER_LAYER, type LayerLimits } from "./layers/policy.js";

/**
 * How much larger than its input a compressed stream can be: deflate's stored blocks cost 5 bytes per 64 KiB and
 * zstd's raw blocks 3 bytes per 128 KiB (both < 1/4096), plus a frame header and trailer well under 1 KiB.
 */
const COMPRESSION_GROWTH = 1 / 4096;
const COMPRESSION_FRAME_BYTES = 1024;

/** The largest WebAssembly module V8 compiles (kV8MaxWasmModuleSize): a larger artifact could never run. */
export const MAX_WASM_ARTIFACT_BYTES = 1024 ** 3;

const compressedBound = (uncompressed: number) => Math.ceil(uncompressed * (1 + COMPRESSION_GROWTH)) + COMPRESSION_FRAME_BYTES;

/**
 * Refuses, before a byte is downloaded, layers whose declared sizes no acceptable image can have. The unpack budget
 * (LayerBudget) bounds what a layer decompresses to; a download is bounded only by the size its manifest declares,
 * so without this a registry could declare a layer of any size and fill the host's disk before the budget sees a
 * byte. The bound is the uncompressed tar the budget would accept (bodies, plus tar metadata for the most entries a
 * layer may have) as compressed at worst, so no layer that could pass the unpack is refused here.
 */
export function checkDeclaredLayerSizes(layers: readonly Descriptor[], limits: LayerLimits, reference: string): void {
  const perLayer = limits.maxEntries * TAR_BYTES_PER_ENTRY + TAR_BYTES_PER_LAYER;
  const layerBound = compressedBound(limits.maxTotalBytes + perLayer);
  let total = 0;
  for (const layer of layers) {
    if (layer.size > layerBound) {
      throw new IiiError(
        "LayerRejected",
        `${reference}: layer ${layer.digest} declares ${layer.size} bytes, more than any layer within the image size limit of ${limits.maxTotalBytes} bytes can take (${layerBound}); not downloaded`,
      );
    }
    total += layer.size;
  }
  // the image's entries are bounded as a whole too: its tar metadata is at most maxImageEntries' worth
  const imageEntries = Math.min(layers.length * limits.maxEntries, limits.maxImageEntries);
  const imageMetadata = imageEntries * TAR_BYTES_PER_ENTRY + layers.length * TAR_BYTES_PER_LAYER;
  const imageBound = compressedBound(limits.maxTotalBytes + imageMetadata) + layers.length * COMPRESSION_FRAME_BYTES;
  if (total > imageBound) {
    throw new IiiError(
      "LayerRejected",
      `${reference}: the layers declare ${total} bytes, more than an image within the size limit of ${limits.maxTotalBytes} bytes can take (${imageBound}); not downloaded`,
    );
  }
}

/**
 * Refuses a download that cannot fit: `bytes` against the space an unprivileged writer may still use on `dir`'s
 * filesystem (the root-reserved blocks are left alone). Checked once before the downloads start, so a pull that
 * would end in ENOSPC ends at once instead, with the disk as it was.
 */
export async function checkFreeSpace(dir: string, bytes: number, what: string): Promise<void> {
  if (bytes === 0) return;
  const fs = await statfs(dir);
  const available = fs.bavail * fs.bsize;
  if (bytes > available) {
    throw new IiiError(
      "ImagePullFailed",
      `${what} needs ${bytes} bytes of downloads, but only ${available} bytes are free in ${dir}; nothing was downloaded`,
    );
  }
}
