import { resolve } from "node:path";
import { iiiHome } from "../paths.js";
import { ImageStore } from "../images/cache/store.js";
import { holdImagesForPrune } from "../images/cache/in-use-lock.js";
import { resolveCachedDigest } from "../images/ensure.js";

export interface CachedImageInfo {
  digest: string;
  /** References (tags, local sources) that currently resolve to this digest. */
  references: string[];
  source: string;
  sizeBytes: number;
  createdAt: string;
  rootfs: string;
  /** The images from `inUse` that resolve to this digest (e.g. worker names mapped by the caller). */
  usedBy: string[];
}

/**
 * Lists the image cache. `inUse` maps a user (a worker name) to the image string it records; each image lists
 * the users whose image resolves to it.
 */
export async function listImages(options: { home?: string; inUse?: Record<string, string> } = {}): Promise<CachedImageInfo[]> {
  const home = options.home ?? iiiHome();
  const store = new ImageStore(home);
  const tags = await store.listTags();
  const users = new Map<string, string[]>();
  for (const [user, image] of Object.entries(options.inUse ?? {})) {
    const digest = await resolveCachedDigest(image, home).catch(() => undefined);
    if (digest) users.set(digest, [...(users.get(digest) ?? []), user]);
  }
  const images: CachedImageInfo[] = [];
  for (const digest of await store.listDigests()) {
    const record = await store.readRecord(digest);
    if (!record) continue;
    images.push({
      digest,
      references: tags.filter((t) => t.digest === digest).map((t) => t.reference).sort(),
      source: record.source,
      sizeBytes: record.sizeBytes,
      createdAt: record.createdAt,
      rootfs: record.rootfs ?? store.rootfsDir(digest),
      usedBy: (users.get(digest) ?? []).sort(),
    });
  }
  return images.sort((a, b) => b.createdAt.localeCompare(a.createdAt));
}

export interface PruneResult {
  removed: Array<{ digest: string; references: string[]; sizeBytes: number }>;
  removedBlobs: number;
  freedBytes: number;
}

/**
 * Removes every cached image not referenced by `referenced` (image strings as recorded in state files, or
 * digests), the tags pointing at them and the blobs no remaining image uses. The caller decides what is
 * referenced: the cache cannot know every project's state file.
 */
export async function pruneImages(referenced: Iterable<string>, options: { home?: string; dryRun?: boolean } = {}): Promise<PruneResult> {
  const home = options.home ?? iiiHome();
  // Not while a pull or a start uses the cache (their images are not named anywhere prune looks yet).
  const exclusive = options.dryRun ? undefined : await holdImagesForPrune(home);
  try {
    return await pruneUnreferenced(home, referenced, options.dryRun ?? false);
  } finally {
    await exclusive?.release();
  }
}

async function pruneUnreferenced(home: string, referenced: Iterable<string>, dryRun: boolean): Promise<PruneResult> {
  const store = new ImageStore(home);
  const keep = new Set<string>();
  const keptBlobs = new Set<string>();
  for (const image of referenced) {
    if (/^sha256:[a-f0-9]{64}$/.test(image)) keep.add(image);
    else if (image.startsWith("wasm:")) {
      // A pulled WASM artifact runs from its layer blob in the cache (`wasm:<III_HOME>/images/blobs/sha256/<hex>`).
      const blob = /^wasm:(.*)\/([a-f0-9]{64})$/.exec(image);
      if (blob && resolve(blob[1]!) === resolve(store.blobPath(`sha256:${blob[2]}`), "..")) keptBlobs.add(`sha256:${blob[2]}`);
    } else {
      const digest = await resolveCachedDigest(image, home).catch(() => undefined);
      if (digest) keep.add(digest);
    }
  }
  const tags = await store.listTags();
  const result: PruneResult = { removed: [], removedBlobs: 0, freedBytes: 0 };
  for (const digest of await store.listDigests()) {
    const record = await store.readRecord(digest);
    if (keep.has(digest)) {
      for (const blob of record?.blobs ?? []) keptBlobs.add(blob);
      continue;
    }
    const references = tags.filter((t) => t.digest === digest).map((t) => t.reference);
    result.removed.push({ digest, references, sizeBytes: record?.sizeBytes ?? 0 });
    // dir: images are the user's own directory: only our record of it goes.
    if (record?.source !== "dir") result.freedBytes += record?.sizeBytes ?? 0;
    if (dryRun) continue;
    await store.removeImage(digest);
    for (const reference of references) await store.removeTag(reference);
  }
  for (const blob of await store.listBlobs()) {
    if (keptBlobs.has(blob)) continue;
    result.removedBlobs += 1;
    if (!dryRun) await store.removeBlob(blob);
  }
  return result;
}
