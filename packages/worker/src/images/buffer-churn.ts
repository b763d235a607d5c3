import { setFlagsFromString } from "node:v8";
import { runInNewContext } from "node:vm";

/**
 * Blob downloads (fetch) allocate a fresh Buffer for every chunk read from the socket, and V8 collects them only
 * once ~32-64 MiB have piled up (its young-generation backing-store and external-memory limits): measured, that
 * garbage was 40-60 MiB of
 * a pull's peak RSS. A young-generation collection every `STEP` bytes streamed frees the dropped chunks while
 * they are few; almost nothing young is still alive then, so each costs well under a millisecond. (Every 4 MiB:
 * peak RSS 175-187 → 129 MB on the bench image; 2 MiB plus a full collection each time reached 117 MB but cost
 * ~30% more time. The rest is Node itself (43 MB), fetch (undici, 17 MB) and the JS heap.) Layers no longer need
 * this: they unpack through reused buffers (layers/decompress.ts pumpLayer).
 */
const STEP = 4 * 1024 * 1024;

type Gc = (options: { type: "minor" }) => void;
let gc: Gc | undefined | null = null;
let pending = 0;

/** `gc` from a fresh context: `--expose-gc` set at run time exposes it there, not on this realm's global. */
function collector(): Gc | undefined {
  if (gc !== null) return gc;
  gc = (globalThis as { gc?: Gc }).gc;
  if (!gc) {
    try {
      setFlagsFromString("--expose-gc");
      gc = runInNewContext("gc") as Gc;
    } catch {
      gc = undefined;
    }
  }
  return gc;
}

/** Counts `bytes` streamed through a pull; every few MiB, collects the chunks already dropped. */
export function streamed(bytes: number): void {
  pending += bytes;
  if (pending < STEP) return;
  pending = 0;
  collector()?.({ type: "minor" });
}
