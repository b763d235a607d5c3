import { open, stat, type FileHandle } from "node:fs/promises";
import { setTimeout as sleep } from "node:timers/promises";

/** The last `lines` lines of a file (all of it when the file has fewer). Reads backwards in blocks. */
export async function tailLines(path: string, lines: number): Promise<string> {
  let handle;
  try {
    handle = await open(path, "r");
  } catch {
    return "";
  }
  try {
    const { size } = await handle.stat();
    if (lines <= 0 || size === 0) return "";
    const block = 64 * 1024;
    let position = size;
    let chunks: Buffer[] = [];
    let newlines = 0;
    while (position > 0 && newlines <= lines) {
      const length = Math.min(block, position);
      position -= length;
      const buffer = Buffer.alloc(length);
      await handle.read(buffer, 0, length, position);
      chunks.unshift(buffer);
      for (const byte of buffer) if (byte === 10) newlines += 1;
    }
    const text = Buffer.concat(chunks).toString("utf8");
    chunks = [];
    const parts = text.split("\n");
    const trailingNewline = text.endsWith("\n");
    if (trailingNewline) parts.pop();
    return parts.slice(-lines).join("\n") + (trailingNewline ? "\n" : "");
  } finally {
    await handle.close();
  }
}

export interface FollowOptions {
  /** Start at this byte offset (default: the end of the file). */
  from?: number;
  signal?: AbortSignal;
  pollMs?: number;
}

/**
 * Follows a file like `tail -F`: yields bytes appended to it, and starts again from the beginning when the
 * file is replaced (a new inode, as on rotation) or truncated (as when a worker restarts and its log is
 * reset). Keeps waiting while the file is missing.
 *
 * The file being followed stays open: on rotation the bytes written to it after the last read and before the
 * rename are read from it before the new file is started (following by path lost them: `logs -f` skipped the
 * tail of every rotated log, which is still in `.1`).
 */
export async function* followFile(path: string, options: FollowOptions = {}): AsyncGenerator<Buffer> {
  const pollMs = options.pollMs ?? 200;
  const wait = () => sleep(pollMs, undefined, { signal: options.signal }).catch(() => {});
  let handle: FileHandle | undefined;
  let inode: number | undefined;
  let offset = options.from;
  try {
    while (!options.signal?.aborted) {
      if (!handle) {
        try {
          handle = await open(path, "r");
        } catch {
          await wait();
          continue;
        }
        const info = await handle.stat();
        if (inode !== undefined && info.ino !== inode) offset = 0;
        if (offset === undefined) offset = info.size;
        inode = info.ino;
      }
      const { size } = await handle.stat();
      if (size < offset!) offset = 0;
      if (size > offset!) {
        while (offset! < size && !options.signal?.aborted) {
          const buffer = Buffer.alloc(Math.min(64 * 1024, size - offset!));
          const { bytesRead } = await handle.read(buffer, 0, buffer.length, offset!);
          if (bytesRead === 0) break;
          offset! += bytesRead;
          yield buffer.subarray(0, bytesRead);
        }
        continue;
      }
      // At the end of this file: has the path moved on to another one (rotated, or removed)?
      const current = await stat(path).catch(() => undefined);
      if (current?.ino !== inode) {
        // What was appended between the read above and the rename is still in the open file.
        if ((await handle.stat()).size > offset!) continue;
        await handle.close();
        handle = undefined;
        if (current) continue;
      }
      await wait();
    }
  } finally {
    await handle?.close();
  }
}
