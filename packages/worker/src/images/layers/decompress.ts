import { createReadStream } from "node:fs";
import { open } from "node:fs/promises";
import { PassThrough, pipeline, type Readable } from "node:stream";
import { createGunzip, createZstdDecompress } from "node:zlib";

export type LayerCompression = "gzip" | "zstd" | "none";

/**
 * The compression of a layer blob, from its magic bytes. iii trusted the media type and decoded every layer as
 * gzip; sniffing makes uncompressed and zstd layers work whatever a registry or docker-archive calls them.
 */
export function sniffCompression(head: Uint8Array): LayerCompression {
  if (head.length >= 2 && head[0] === 0x1f && head[1] === 0x8b) return "gzip";
  if (head.length >= 4 && head[0] === 0x28 && head[1] === 0xb5 && head[2] === 0x2f && head[3] === 0xfd) return "zstd";
  return "none";
}

export async function detectFileCompression(path: string): Promise<LayerCompression> {
  const handle = await open(path, "r");
  try {
    const head = Buffer.alloc(4);
    const { bytesRead } = await handle.read(head, 0, 4, 0);
    return sniffCompression(head.subarray(0, bytesRead));
  } finally {
    await handle.close();
  }
}

export interface OpenedLayer {
  /** The raw blob bytes as read from disk (hash these to check the blob digest). */
  raw: Readable;
  /** The uncompressed tar stream. */
  tar: Readable;
  compression: LayerCompression;
}

/**
 * Opens a layer blob file as an uncompressed tar stream; errors of either stage surface on `tar`. `compression`
 * overrides sniffing (a tar we decompressed ourselves may begin with any bytes an entry name holds).
 */
export async function openLayerFile(path: string, compression?: LayerCompression): Promise<OpenedLayer> {
  compression ??= await detectFileCompression(path);
  const raw = createReadStream(path, { highWaterMark: 1 << 16 });
  const decoder =
    compression === "gzip"
      ? createGunzip({ chunkSize: 1 << 16 })
      : compression === "zstd"
        ? createZstdDecompress({ chunkSize: 1 << 16 })
        : new PassThrough({ highWaterMark: 1 << 16 });
  pipeline(raw, decoder, () => {
    // errors are delivered to the consumer of `decoder` by pipeline destroying it
  });
  return { raw, tar: decoder, compression };
}
