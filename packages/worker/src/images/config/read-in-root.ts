import { constants } from "node:fs";
import { lstat, open, readlink } from "node:fs/promises";
import { join } from "node:path";
import { RootResolver } from "../layers/safe-root.js";

/**
 * Reads a file of an unpacked rootfs as the guest would see it (symlinks resolved inside the rootfs, never on
 * the host). Undefined when it does not exist or is not a regular file; at most `maxBytes`.
 */
export async function readFileInRoot(root: string, path: string, maxBytes = 1024 * 1024): Promise<Buffer | undefined> {
  const resolver = new RootResolver(root);
  let components = path.split("/").filter((c) => c !== "" && c !== ".");
  for (let hop = 0; hop < 40; hop++) {
    const parent = await resolver.resolveDir(components.slice(0, -1), false, { label: `rootfs ${root}`, name: path });
    if (!parent || components.length === 0) return undefined;
    const last = components[components.length - 1]!;
    const host = join(root, ...parent, last);
    const stats = await lstat(host).catch(() => undefined);
    if (!stats) return undefined;
    if (stats.isSymbolicLink()) {
      const target = await readlink(host);
      components = [...(target.startsWith("/") ? [] : parent), ...target.split("/")].filter((c) => c !== "" && c !== ".");
      // `..` inside the target is resolved by resolveDir on the next round (and refused above the root).
      if (components[components.length - 1] === "..") return undefined;
      continue;
    }
    if (!stats.isFile()) return undefined;
    const handle = await open(host, constants.O_RDONLY | constants.O_NOFOLLOW);
    try {
      const buffer = Buffer.alloc(Math.min(stats.size, maxBytes));
      const { bytesRead } = await handle.read(buffer, 0, buffer.length, 0);
      return buffer.subarray(0, bytesRead);
    } finally {
      await handle.close();
    }
  }
  return undefined;
}
