import { mkdirs } from "../../host/mkdirs.js";
import { randomBytes } from "node:crypto";
import { lstatSync, readdirSync } from "node:fs";
import { chmod, lstat, mkdir, readdir, readFile, rename, rm } from "node:fs/promises";
import { join } from "node:path";
import { errnoCode } from "../../errors.js";
import { processStartTime } from "../../host/process-identity.js";
import { digestHex, sha256Digest } from "../digest.js";
import type { ImageRuntimeConfig, WorkerManifest } from "../config/runtime-config.js";
import { writeFileAtomic } from "../../util/atomic-write.js";
import { checkHomeSafe } from "../../state/home-safety.js";

/** What `image.json` records next to a cached rootfs. */
export interface CachedImageRecord {
  digest: string;
  /** The source kind ("registry", "oci", "oci-archive", "docker-archive", "dir"). */
  source: string;
  /** Canonical references that resolved to this digest when it was stored. */
  references: string[];
  config: ImageRuntimeConfig;
  manifest?: WorkerManifest;
  /** Apparent size of the unpacked rootfs (hardlinks counted once). */
  sizeBytes: number;
  /** Blobs the image was built from (config + layers), so prune can keep shared blobs. */
  blobs: string[];
  /** For dir: sources, the directory used as the rootfs in place. */
  rootfs?: string;
  createdAt: string;
  skipped?: string[];
}

export interface TagRecord {
  reference: string;
  digest: string;
  updatedAt: string;
  /** For archive sources: the file's size and mtime when it was read. */
  sourceStamp?: string;
}

/**
 * The on-disk image cache under `<III_HOME>/images`:
 *   sha256/<hex>/{rootfs/, image.json, manifest.json, config.json}  one dir per manifest digest, renamed into place
 *   blobs/sha256/<hex>, blobs/partial/<hex>.<pid>.partial           downloaded blobs, resumable
 *   refs/<sha256 of reference>.json                                 tag → digest, rewritten on every resolve
 *   tmp/<pid>.<random>/                                             unpacks in progress (swept when the pid is dead)
 */
export class ImageStore {
  readonly root: string;

  constructor(private readonly home: string) {
    this.root = join(home, "images");
  }

  imageDir(digest: string): string {
    return join(this.root, "sha256", digestHex(digest));
  }

  rootfsDir(digest: string): string {
    return join(this.imageDir(digest), "rootfs");
  }

  blobPath(digest: string): string {
    return join(this.root, "blobs", "sha256", digestHex(digest));
  }

  get partialDir(): string {
    return join(this.root, "blobs", "partial");
  }

  /**
   * Creates the cache private: `images/` and everything at its top 0700 (and III_HOME 0700 when the cache creates
   * it), and tightens an `images/` an older iii left 0755. Other local users must not read pulled images (private
   * code, baked-in secrets) nor reach a rootfs: a rootfs keeps its image's modes and owners (apply.ts applies them
   * as the image says, 1777 /var/tmp and uid 1000 included), and it is the shared lower layer of every worker of
   * the image. The 0700 parent is what closes that path, as `managed/` does for upper layers (DESIGN §8).
   * An existing III_HOME keeps its mode: it may be a directory the user chose and shares; `images/` is the cache's.
   */
  async init(): Promise<void> {
    await mkdirs(this.root, PRIVATE_DIR_MODE);
    // After the mkdirs: an III_HOME another user made (or can write) first is refused before anything is put in it.
    checkHomeSafe(this.home);
    await tightenOwnDir(this.root);
    for (const dir of [join(this.root, "sha256"), join(this.root, "blobs"), join(this.root, "blobs", "sha256"), this.partialDir, join(this.root, "refs"), join(this.root, "tmp")]) {
      await mkdirs(dir, PRIVATE_DIR_MODE);
      await tightenOwnDir(dir);
    }
  }

  async hasBlob(digest: string): Promise<boolean> {
    return exists(this.blobPath(digest));
  }

  async readRecord(digest: string): Promise<CachedImageRecord | undefined> {
    try {
      return JSON.parse(await readFile(join(this.imageDir(digest), "image.json"), "utf8")) as CachedImageRecord;
    } catch (error) {
      if (errnoCode(error) === "ENOENT") return undefined;
      throw error;
    }
  }

  /** A complete image: its directory only exists after the final rename, so presence means complete. */
  async hasImage(digest: string): Promise<boolean> {
    return exists(join(this.imageDir(digest), "image.json"));
  }

  private refPath(reference: string): string {
    return join(this.root, "refs", `${digestHex(sha256Digest(reference))}.json`);
  }

  async readTag(reference: string): Promise<TagRecord | undefined> {
    try {
      return JSON.parse(await readFile(this.refPath(reference), "utf8")) as TagRecord;
    } catch {
      return undefined;
    }
  }

  async writeTag(record: TagRecord): Promise<void> {
    await writeAtomic(this.refPath(record.reference), `${JSON.stringify(record, null, 2)}\n`);
  }

  async listTags(): Promise<TagRecord[]> {
    const dir = join(this.root, "refs");
    const names = await readdir(dir).catch(() => [] as string[]);
    const tags: TagRecord[] = [];
    for (const name of names) {
      if (!name.endsWith(".json")) continue;
      try {
        tags.push(JSON.parse(await readFile(join(dir, name), "utf8")) as TagRecord);
      } catch {
        // a torn write cannot happen (rename), but a foreign file is not ours to interpret
      }
    }
    return tags;
  }

  async removeTag(reference: string): Promise<void> {
    await rm(this.refPath(reference), { force: true });
  }

  async listDigests(): Promise<string[]> {
    const names = await readdir(join(this.root, "sha256")).catch(() => [] as string[]);
    return names.filter((n) => /^[a-f0-9]{64}$/.test(n)).map((n) => `sha256:${n}`);
  }

  /** A private staging directory; `commit` renames it into place, so a crash never leaves a half image. */
  async createStaging(): Promise<string> {
    const dir = join(this.root, "tmp", `${process.pid}.${processStartTime(process.pid) ?? 0}.${randomBytes(6).toString("hex")}`);
    await mkdir(dir, { mode: PRIVATE_DIR_MODE });
    return dir;
  }

  /** Moves a staged image into place. Returns false when another process committed the same digest first. */
  async commit(staging: string, digest: string): Promise<boolean> {
    try {
      await rename(staging, this.imageDir(digest));
      return true;
    } catch (error) {
      const code = errnoCode(error);
      if (code === "ENOTEMPTY" || code === "EEXIST") {
        await rm(staging, { recursive: true, force: true });
        return false;
      }
      throw error;
    }
  }

  /** Removes staging dirs and partial files of processes that are gone (a kill -9 mid-pull). */
  async sweep(): Promise<void> {
    const tmp = join(this.root, "tmp");
    for (const name of await readdir(tmp).catch(() => [] as string[])) {
      const match = /^(\d+)\.(\d+)\./.exec(name);
      if (match && processStartTime(Number(match[1])) === Number(match[2])) continue;
      await rm(join(tmp, name), { recursive: true, force: true });
    }
  }

  async removeImage(digest: string): Promise<void> {
    // Rename first so a concurrent reader never sees a half-deleted image as complete.
    const doomed = join(this.root, "tmp", `deleting.${digestHex(digest)}.${randomBytes(4).toString("hex")}`);
    try {
      await rename(this.imageDir(digest), doomed);
    } catch (error) {
      if (errnoCode(error) === "ENOENT") return;
      throw error;
    }
    await rm(doomed, { recursive: true, force: true });
  }

  async listBlobs(): Promise<string[]> {
    const names = await readdir(join(this.root, "blobs", "sha256")).catch(() => [] as string[]);
    return names.filter((n) => /^[a-f0-9]{64}$/.test(n)).map((n) => `sha256:${n}`);
  }

  async removeBlob(digest: string): Promise<void> {
    await rm(this.blobPath(digest), { force: true });
  }
}

/** The mode of every directory the cache makes at its top (see ImageStore.init). */
export const PRIVATE_DIR_MODE = 0o700;

/** chmod 0700 a directory of ours that group or others can reach; leaves a symlink or another user's directory. */
async function tightenOwnDir(path: string): Promise<void> {
  const stats = await lstat(path);
  if (!stats.isDirectory() || (stats.mode & 0o077) === 0) return;
  if (typeof process.getuid === "function" && stats.uid !== process.getuid()) return;
  await chmod(path, PRIVATE_DIR_MODE);
}

export async function exists(path: string): Promise<boolean> {
  try {
    await lstat(path);
    return true;
  } catch {
    return false;
  }
}

/** The cache's small records (refs, image.json): the worker's one atomic write, without fsync (a lost record is re-pulled). */
export function writeAtomic(path: string, data: string | Uint8Array, mode = 0o644): Promise<void> {
  return writeFileAtomic(path, data, { mode, fsync: false });
}

/** Apparent size of a tree, counting each inode once; never follows symlinks. Sync: see RootfsBuilder.writeFile. */
export async function treeSize(root: string): Promise<number> {
  const seen = new Set<string>();
  let total = 0;
  const stack = [root];
  while (stack.length > 0) {
    const dir = stack.pop()!;
    let entries;
    try {
      entries = readdirSync(dir, { withFileTypes: true });
    } catch {
      continue;
    }
    for (const entry of entries) {
      const path = join(dir, entry.name);
      if (entry.isDirectory()) {
        stack.push(path);
        continue;
      }
      if (!entry.isFile()) continue;
      const stats = lstatSync(path, { throwIfNoEntry: false });
      if (!stats) continue;
      if (stats.nlink > 1) {
        const key = `${stats.dev}:${stats.ino}`;
        if (seen.has(key)) continue;
        seen.add(key);
      }
      total += stats.size;
    }
  }
  return total;
}
