import { createRequire } from "node:module";

/**
 * The worker's one way to replace a file: readers see the old content or the new one, never a torn write
 * (a temporary file beside it, fsync, rename; write-file-atomic, loaded on first use so commands that never
 * write pay nothing for it).
 */
type WriteFileAtomic = typeof import("write-file-atomic");
let loaded: WriteFileAtomic | undefined;
const writer = (): WriteFileAtomic => (loaded ??= createRequire(import.meta.url)("write-file-atomic") as WriteFileAtomic);

export interface AtomicWriteOptions {
  /** Mode of a new file (an existing file keeps its own). */
  mode?: number;
  /** fsync before the rename (default true). */
  fsync?: boolean;
}

export async function writeFileAtomic(path: string, data: string | Uint8Array, options: AtomicWriteOptions = {}): Promise<void> {
  await writer()(path, typeof data === "string" ? data : Buffer.from(data.buffer, data.byteOffset, data.byteLength), options);
}

export function writeFileAtomicSync(path: string, data: string | Uint8Array, options: AtomicWriteOptions = {}): void {
  writer().sync(path, typeof data === "string" ? data : Buffer.from(data.buffer, data.byteOffset, data.byteLength), options);
}

/** `value` as pretty JSON with a final newline, written atomically. */
export function writeJsonAtomic(path: string, value: unknown, options: AtomicWriteOptions = {}): Promise<void> {
  return writeFileAtomic(path, `${JSON.stringify(value, null, 2)}\n`, options);
}
