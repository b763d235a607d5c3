import { createReadStream } from "node:fs";
import { open, stat } from "node:fs/promises";
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
 */
export async function* followFile(path: string, options: FollowOptions = {}): AsyncGenerator<Buffer> {
  const pollMs = options.pollMs ?? 200;
  let inode: number | undefined;
  let offset = options.from;
  while (!options.signal?.aborted) {
    let info;
    try {
      info = await stat(path);
    } catch {
      await sleep(pollMs, undefined, { signal: options.signal }).catch(() => {});
      continue;
    }
    if (inode !== undefined && info.ino !== inode) offset = 0;
    if (offset === undefined) offset = info.size;
    if (info.size < offset) offset = 0;
    inode = info.ino;
    if (info.size > offset) {
      const stream = createReadStream(path, { start: offset, end: info.size - 1 });
      for await (const chunk of stream) {
        offset += (chunk as Buffer).length;
        yield chunk as Buffer;
      }
      continue;
    }
    await sleep(pollMs, undefined, { signal: options.signal }).catch(() => {});
  }
}
