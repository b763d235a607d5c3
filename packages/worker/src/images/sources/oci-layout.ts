import { mkdirs } from "../../host/mkdirs.js";
import { createReadStream } from "node:fs";
import { link, lstat, mkdir, open, readFile } from "node:fs/promises";
import { dirname, join, posix } from "node:path";
import { errnoCode, IiiError } from "../../errors.js";
import { changeableByOthers } from "../../state/home-safety.js";
import { digestHex, requireSha256Digest, sha256Digest } from "../digest.js";
import {
  MAX_JSON_BYTES,
  MediaType,
  parseJson,
  parseManifestDocument,
  selectPlatform,
  type Descriptor,
  type ImageManifest,
} from "../oci/manifest.js";

/** A manifest with everything needed to unpack it from local files. */
export interface LocalImage {
  digest: string;
  manifestBytes: Buffer;
  manifest: ImageManifest;
  configBytes: Buffer;
  /** Layer blob files, in manifest order. */
  layerPaths: string[];
}

async function readSmall(path: string, what: string, maxBytes = MAX_JSON_BYTES): Promise<Buffer> {
  let stats;
  try {
    stats = await lstat(path);
  } catch (error) {
    throw new IiiError("ImageInvalid", `${what}: ${path} is missing`, { cause: error });
  }
  if (!stats.isFile()) throw new IiiError("ImageInvalid", `${what}: ${path} is not a regular file`);
  if (stats.size > maxBytes) throw new IiiError("ImageInvalid", `${what}: ${path} is larger than ${maxBytes} bytes`);
  return readFile(path);
}

async function readVerifiedBlob(layout: string, descriptor: Descriptor, what: string): Promise<Buffer> {
  const bytes = await readSmall(join(layout, "blobs", "sha256", digestHex(descriptor.digest)), what);
  if (sha256Digest(bytes) !== descriptor.digest) throw new IiiError("ImageInvalid", `${what}: blob ${descriptor.digest} does not match its digest`);
  return bytes;
}

/**
 * Resolves `tag` in an OCI image layout (index.json → optional nested index → manifest). Without a tag, the
 * layout must hold exactly one manifest (or one index). Layer blobs are verified later, while they are scanned.
 */
export async function readOciLayout(layout: string, tag: string | undefined, source: string): Promise<LocalImage> {
  const layoutFile = await readSmall(join(layout, "oci-layout"), `${source}`).catch(() => undefined);
  if (!layoutFile) throw new IiiError("ImageInvalid", `${source}: ${layout} is not an OCI image layout (no oci-layout file)`);
  const index = parseManifestDocument(await readSmall(join(layout, "index.json"), source), `${source} index.json`, MediaType.OciIndex);
  if (index.kind !== "index") throw new IiiError("ImageInvalid", `${source}: index.json is not an image index`);
  let candidates = index.manifests;
  if (tag !== undefined) {
    candidates = candidates.filter((m) => m.annotations?.["org.opencontainers.image.ref.name"] === tag);
    if (candidates.length === 0) {
      const tags = index.manifests.map((m) => m.annotations?.["org.opencontainers.image.ref.name"]).filter(Boolean);
      throw new IiiError("ImageInvalid", `${source}: no image tagged "${tag}" in the layout (tags: ${tags.join(", ") || "none"})`);
    }
  }
  let descriptor: Descriptor;
  if (candidates.length === 1) descriptor = candidates[0]!;
  else if (candidates.every((c) => c.platform)) descriptor = selectPlatform({ kind: "index", mediaType: MediaType.OciIndex, manifests: candidates }, source);
  else throw new IiiError("ImageInvalid", `${source}: the layout holds ${candidates.length} images; name one with :<tag>`);
  for (let depth = 0; depth < 4; depth++) {
    const bytes = await readVerifiedBlob(layout, descriptor, source);
    const document = parseManifestDocument(bytes, `${source} manifest ${descriptor.digest}`, descriptor.mediaType);
    if (document.kind === "index") {
      descriptor = selectPlatform(document, source);
      continue;
    }
    const configBytes = await readVerifiedBlob(layout, document.config, `${source} config`);
    const layerPaths = document.layers.map((l) => join(layout, "blobs", "sha256", digestHex(l.digest)));
    for (const path of layerPaths) checkLayerFile(path, source);
    return { digest: descriptor.digest, manifestBytes: bytes, manifest: document, configBytes, layerPaths };
  }
  throw new IiiError("ImageInvalid", `${source}: indexes nested too deeply`);
}

/**
 * A layer of a layout is read twice, in place: the scan checks it against its digest, the unpack reads it again
 * (an uncompressed one is not copied in between). The unpack hashes what it reads and refuses a layer that changed
 * in between (layers/apply.ts), so a change fails the pull instead of caching content under a digest that does not
 * cover it; another user still may not be able to change it: its file and the directories above must be this
 * user's or root's, writable by no one else (a failed pull is theirs to cause otherwise, and no other input of a
 * pull is theirs to write).
 */
function checkLayerFile(path: string, source: string): void {
  let why: string | undefined;
  try {
    why = changeableByOthers(path);
  } catch (error) {
    throw new IiiError("ImageInvalid", `${source}: layer blob ${path}: ${(error as Error).message}`, { cause: error });
  }
  if (why) {
    throw new IiiError("ImageInvalid", `${source}: ${why}, so the layer could change after its digest is checked; copy the layout to a directory of yours first`);
  }
}

const ARCHIVE_MEMBER = /^(?:oci-layout|index\.json|manifest\.json|repositories|blobs\/sha256\/[a-f0-9]{64}|[a-f0-9]{64}\.(?:json|tar)|[a-f0-9]{64}\/(?:layer\.tar|json|VERSION))$/;

/**
 * Extracts the members of an image archive (OCI layout tar or `docker save` tar) that describe an image into
 * `dest`. Only the fixed set of names an image archive has is written, so an archive cannot place files anywhere
 * else; symlinked duplicates (docker save dedups layers that way) become hardlinks.
 */
export async function extractImageArchive(file: string, dest: string, source: string, signal?: AbortSignal): Promise<void> {
  const { extract: tarExtract } = await import("tar-stream");
  const extractor = tarExtract();
  const input = createReadStream(file, { highWaterMark: 1 << 20 });
  input.on("error", (error) => extractor.destroy(error));
  input.pipe(extractor);
  const aliases: Array<[string, string]> = [];
  const abort = () => extractor.destroy(new Error("aborted"));
  signal?.addEventListener("abort", abort, { once: true });
  try {
    for await (const entry of extractor) {
      const name = posix.normalize(entry.header.name).replace(/^\.\//, "").replace(/\/$/, "");
      const type = entry.header.type;
      if (ARCHIVE_MEMBER.test(name) && (type === "file" || type === "contiguous-file")) {
        const path = join(dest, name);
        await mkdirs(dirname(path));
        const handle = await open(path, "wx", 0o644);
        try {
          for await (const chunk of entry) await handle.write(chunk as Buffer);
        } finally {
          await handle.close();
        }
        continue;
      }
      if (ARCHIVE_MEMBER.test(name) && (type === "symlink" || type === "link") && entry.header.linkname) {
        const target =
          type === "symlink" ? posix.normalize(posix.join(posix.dirname(name), entry.header.linkname)) : posix.normalize(entry.header.linkname);
        if (ARCHIVE_MEMBER.test(target)) aliases.push([target, name]);
      }
      entry.resume();
      await new Promise<void>((resolve, reject) => {
        entry.on("end", resolve);
        entry.on("error", reject);
      });
    }
  } catch (error) {
    if (error instanceof IiiError) throw error;
    throw new IiiError("ImageInvalid", `${source}: cannot read the archive: ${(error as Error).message}`, { cause: error });
  } finally {
    signal?.removeEventListener("abort", abort);
  }
  for (const [target, name] of aliases) {
    const path = join(dest, name);
    await mkdirs(dirname(path));
    try {
      await link(join(dest, target), path);
    } catch (error) {
      if (errnoCode(error) !== "EEXIST") throw new IiiError("ImageInvalid", `${source}: archive member ${name} links to missing ${target}`, { cause: error });
    }
  }
}

/** Hashes a file (a layer of a docker-archive, which has no digests of its own). */
async function fileDigest(path: string): Promise<{ digest: string; size: number }> {
  const { createHash } = await import("node:crypto");
  const hash = createHash("sha256");
  let size = 0;
  for await (const chunk of createReadStream(path, { highWaterMark: 1 << 20 })) {
    hash.update(chunk as Buffer);
    size += (chunk as Buffer).length;
  }
  return { digest: `sha256:${hash.digest("hex")}`, size };
}

/**
 * Reads an extracted `docker save` archive. It has no manifest digest, so one is synthesised: an OCI manifest
 * over the config and the layer files' digests, whose own digest identifies the image in the cache.
 */
export async function readDockerArchive(dir: string, source: string): Promise<LocalImage> {
  const raw = parseJson(await readSmall(join(dir, "manifest.json"), source), `${source} manifest.json`);
  if (!Array.isArray(raw) || raw.length === 0) throw new IiiError("ImageInvalid", `${source}: manifest.json lists no image`);
  if (raw.length > 1) throw new IiiError("ImageInvalid", `${source}: the archive holds ${raw.length} images; only single-image archives are supported`);
  const entry = raw[0] as { Config?: unknown; Layers?: unknown };
  const safeMember = (value: unknown, what: string): string => {
    const name = typeof value === "string" ? posix.normalize(value).replace(/^\.\//, "") : "";
    if (!ARCHIVE_MEMBER.test(name)) throw new IiiError("ImageInvalid", `${source}: manifest.json ${what} ${JSON.stringify(value)} is not an archive member`);
    return join(dir, name);
  };
  const configPath = safeMember(entry.Config, "Config");
  if (!Array.isArray(entry.Layers)) throw new IiiError("ImageInvalid", `${source}: manifest.json has no Layers`);
  const layerPaths = entry.Layers.map((l, i) => safeMember(l, `Layers[${i}]`));
  const configBytes = await readSmall(configPath, `${source} config`);
  const layers: Descriptor[] = [];
  for (const path of layerPaths) {
    const { digest, size } = await fileDigest(path);
    layers.push({ mediaType: MediaType.OciLayer, digest, size });
  }
  const config: Descriptor = { mediaType: MediaType.OciConfig, digest: sha256Digest(configBytes), size: configBytes.length };
  const manifestBytes = Buffer.from(JSON.stringify({ schemaVersion: 2, mediaType: MediaType.OciManifest, config, layers }));
  return {
    digest: requireSha256Digest(sha256Digest(manifestBytes), source),
    manifestBytes,
    manifest: { kind: "manifest", mediaType: MediaType.OciManifest, config, layers },
    configBytes,
    layerPaths,
  };
}

/** Splits `oci:/dir:tag` / `oci-archive:/file.tar:tag` like containers/image does: the path ends at the first ':'. */
export function splitLocalSource(image: string): { kind: string; path: string; tag?: string } {
  const colon = image.indexOf(":");
  const kind = image.slice(0, colon);
  const rest = image.slice(colon + 1);
  if (kind === "oci" || kind === "oci-archive") {
    const sep = rest.indexOf(":");
    if (sep >= 0) {
      const tag = rest.slice(sep + 1);
      return tag ? { kind, path: rest.slice(0, sep), tag } : { kind, path: rest.slice(0, sep) };
    }
  }
  return { kind, path: rest };
}
