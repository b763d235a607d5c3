import type { Readable } from "node:stream";
import { extract as tarExtract } from "tar-stream";
import { IiiError } from "../../errors.js";
import type { TarHeaderLike } from "./policy.js";

/** Feeds every entry of an uncompressed tar stream to `visit`, one at a time; `tar` is destroyed at the end. */
export async function forEachEntry(
  tar: Readable,
  signal: AbortSignal | undefined,
  visit: (header: TarHeaderLike, body: Readable) => Promise<void>,
): Promise<void> {
  const extractor = tarExtract();
  tar.on("error", (error) => extractor.destroy(error));
  tar.pipe(extractor);
  const abort = () => extractor.destroy(signal?.reason instanceof Error ? signal.reason : new Error("aborted"));
  signal?.addEventListener("abort", abort, { once: true });
  try {
    signal?.throwIfAborted();
    for await (const entry of extractor) {
      await visit(entry.header as unknown as TarHeaderLike, entry as unknown as Readable);
    }
  } finally {
    signal?.removeEventListener("abort", abort);
    tar.unpipe(extractor);
    tar.destroy();
  }
}

/** A read or decode failure as the layer's typed error (policy refusals are already typed). */
export function wrapReadError(error: unknown, label: string): unknown {
  if (error instanceof IiiError) return error;
  return new IiiError("ImageInvalid", `${label}: cannot read the layer: ${(error as Error).message}`, { cause: error });
}
