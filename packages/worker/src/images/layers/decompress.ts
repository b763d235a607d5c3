import { closeSync, openSync, readSync } from "node:fs";
import { open } from "node:fs/promises";
import { setImmediate as yieldToLoop } from "node:timers/promises";
import { constants, createGunzip, createZstdDecompress, type Gunzip, type ZstdDecompress } from "node:zlib";

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

/** Input read per step; output is produced into a buffer of the same size. */
const CHUNK = 1 << 16;
/** Steps between two returns to the event loop (so downloads and timers keep running during a long layer). */
const STEPS_PER_YIELD = 4;

/** Node's zlib handle as its own sync path drives it (lib/zlib.js processChunkSync). */
interface ZlibHandle {
  writeSync(flush: number, input: Uint8Array, inOff: number, inLen: number, out: Uint8Array, outOff: number, outLen: number): void;
}

/**
 * A synchronous decompressor writing into one reused buffer. Node's streaming zlib allocates a fresh output buffer
 * per 64 KiB and runs on the thread pool; on a 400 MB layer that garbage alone (collected only when ~32 MB of it
 * had piled up) was more than skopeo + umoci's whole footprint. This drives the stream's native handle directly,
 * as zlib's own sync functions do; where a Node version lacks that shape, `undefined` (the caller streams).
 */
export function syncInflater(compression: "gzip" | "zstd"): { run(input: Uint8Array, finish: boolean, out: Uint8Array, emit: (b: Uint8Array) => void): void; close(): void } | undefined {
  const stream: Gunzip | ZstdDecompress = compression === "gzip" ? createGunzip() : createZstdDecompress();
  const internals = stream as unknown as { _handle?: Partial<ZlibHandle>; _writeState?: Uint32Array };
  const handle = internals._handle;
  const state = internals._writeState;
  if (typeof handle?.writeSync !== "function" || !(state instanceof Uint32Array)) {
    stream.destroy();
    return undefined;
  }
  const [normal, finishFlag] = compression === "gzip" ? [constants.Z_NO_FLUSH, constants.Z_FINISH] : [constants.ZSTD_e_continue, constants.ZSTD_e_end];
  stream.on("error", () => {
    // surfaced through `errored` right after the call that failed
  });
  return {
    run(input, finish, out, emit) {
      let inOff = 0;
      let inLen = input.length;
      for (;;) {
        handle.writeSync!(finish ? finishFlag : normal, input, inOff, inLen, out, 0, out.length);
        if (stream.errored) throw stream.errored;
        const availOut = state[0]!;
        const availIn = state[1]!;
        if (availOut < out.length) emit(out.subarray(0, out.length - availOut));
        inOff += inLen - availIn;
        inLen = availIn;
        if (availOut !== 0) return;
      }
    },
    close() {
      stream.destroy();
    },
  };
}

export interface PumpedLayer {
  compression: LayerCompression;
}

/**
 * Reads a layer blob once: `raw` sees the blob's bytes (hash them for the blob digest) and `tar` the uncompressed
 * tar, each as a view of a buffer reused for the whole layer, valid only during the call; nothing a layer holds
 * grows with its size. `compression` overrides sniffing (a tar we decompressed ourselves may begin with any bytes
 * an entry name holds). Work is synchronous in steps of 64 KiB of input, with a return to the event loop every
 * few steps.
 */
export async function pumpLayer(
  path: string,
  raw: ((chunk: Uint8Array) => void) | undefined,
  tar: (chunk: Uint8Array) => void,
  options: { compression?: LayerCompression; signal?: AbortSignal } = {},
): Promise<PumpedLayer> {
  const fd = openSync(path, "r");
  try {
    const input = Buffer.allocUnsafe(CHUNK);
    let n = readSync(fd, input, 0, CHUNK, null);
    const compression = options.compression ?? sniffCompression(input.subarray(0, n));
    if (compression === "none") {
      for (let step = 1; n > 0; step++) {
        const chunk = input.subarray(0, n);
        raw?.(chunk);
        tar(chunk);
        if (step % STEPS_PER_YIELD === 0) await pause(options.signal);
        n = readSync(fd, input, 0, CHUNK, null);
      }
      return { compression };
    }
    const inflater = syncInflater(compression);
    if (!inflater) {
      await pumpStreaming(path, compression, raw, tar, options.signal);
      return { compression };
    }
    try {
      const out = Buffer.allocUnsafe(CHUNK);
      for (let step = 1; n > 0; step++) {
        const chunk = input.subarray(0, n);
        raw?.(chunk);
        inflater.run(chunk, false, out, tar);
        if (step % STEPS_PER_YIELD === 0) await pause(options.signal);
        n = readSync(fd, input, 0, CHUNK, null);
      }
      inflater.run(input.subarray(0, 0), true, out, tar);
    } finally {
      inflater.close();
    }
    return { compression };
  } finally {
    closeSync(fd);
  }
}

async function pause(signal: AbortSignal | undefined): Promise<void> {
  signal?.throwIfAborted();
  await yieldToLoop();
  signal?.throwIfAborted();
}

/** The portable path: Node's zlib stream (more garbage, same bytes). */
async function pumpStreaming(
  path: string,
  compression: "gzip" | "zstd",
  raw: ((chunk: Uint8Array) => void) | undefined,
  tar: (chunk: Uint8Array) => void,
  signal: AbortSignal | undefined,
): Promise<void> {
  const { createReadStream } = await import("node:fs");
  const { pipeline } = await import("node:stream/promises");
  const source = createReadStream(path, { highWaterMark: CHUNK });
  if (raw) source.on("data", (chunk) => raw(chunk as Buffer));
  const decoder = compression === "gzip" ? createGunzip({ chunkSize: CHUNK }) : createZstdDecompress({ chunkSize: CHUNK });
  await pipeline(
    source,
    decoder,
    async (chunks: AsyncIterable<Buffer>) => {
      for await (const chunk of chunks) tar(chunk);
    },
    signal ? { signal } : {},
  );
}
