import { mkdirs } from "../host/mkdirs.js";
import { mkdir, readFile, rm, stat, writeFile } from "node:fs/promises";
import { isAbsolute, join } from "node:path";
import { errnoCode, IiiError } from "../errors.js";
import { assertRootfsOnlyOurs } from "../state/home-safety.js";
import { iiiHome } from "../paths.js";
import { formatImageReference, isLocalSource, parseImageReference, type ImageReference } from "./oci/reference.js";
import { ImageStore, PRIVATE_DIR_MODE, treeSize, writeAtomic, type CachedImageRecord } from "./cache/store.js";
import {
  readWorkerManifest,
  runtimeConfigFromRootfs,
  type ImageRuntimeConfig,
  type WorkerManifest,
} from "./config/runtime-config.js";
import { sha256Digest } from "./digest.js";
import { applyLayers, type ApplyOptions } from "./layers/apply.js";
import { DEFAULT_LAYER_LIMITS, type LayerLimits } from "./layers/policy.js";
import { checkDeclaredLayerSizes, checkFreeSpace } from "./declared-size.js";
import { withImagesInUse } from "./cache/in-use-lock.js";
import { hostArchitecture, parseJson, parseManifestDocument, selectPlatform, type ImageManifest } from "./oci/manifest.js";
import { leanVm } from "./lean-vm.js";
import { takeHandedOffManifest } from "./manifest-handoff.js";
import { createPullProgress } from "./progress.js";
import { RegistryClient } from "./registry/client.js";
import { lookupCredentials } from "./registry/credentials.js";
import { extractImageArchive, readDockerArchive, readOciLayout, splitLocalSource, type LocalImage } from "./sources/oci-layout.js";
import { downloadOnce } from "../util/download-once.js";
import { Semaphore } from "../util/semaphore.js";

export type PullPolicy = "missing" | "always" | "never";

export interface EnsureImageOptions {
  /** missing (default): use the cached image for this reference if any; always: re-resolve the tag; never: cache only. */
  pull?: PullPolicy;
  /** host[:port] allowed over plain HTTP (also `III_INSECURE_REGISTRIES` and `<home>/registries.json`). */
  insecureRegistries?: string[];
  /** III_HOME (default from env / ~/.iii). */
  home?: string;
  /** Progress bars on stderr. */
  progress?: boolean;
  signal?: AbortSignal;
  /** Keep setuid/setgid bits from the layers (stripped by default). */
  keepSetuid?: boolean;
  /** Override the layer limits (tests, or unusually large images). */
  limits?: Partial<LayerLimits>;
  /** Parallel blob downloads (default 3). */
  concurrency?: number;
  env?: NodeJS.ProcessEnv;
}

export interface EnsuredImage {
  /** Manifest digest (sha256:…); for dir: sources, a digest of the path. */
  digest: string;
  /** Absolute path of the read-only rootfs (~/.iii/images/sha256/<hex>/rootfs; the directory itself for dir:). */
  rootfs: string;
  config: ImageRuntimeConfig;
  /** /iii/worker.yaml from the image, if present. */
  manifest?: WorkerManifest;
  sizeBytes: number;
  /** The canonical reference the digest was resolved from. */
  reference: string;
  /** True when nothing had to be downloaded or unpacked. */
  cached: boolean;
  /** Entries not materialised (device nodes). */
  skipped: string[];
}

/** The cache key of a registry reference: host/repo:tag (tag defaults to latest) or host/repo@digest. */
export function canonicalReference(ref: ImageReference): string {
  return ref.digest
    ? formatImageReference({ registry: ref.registry, repository: ref.repository, digest: ref.digest })
    : formatImageReference({ registry: ref.registry, repository: ref.repository, tag: ref.tag ?? "latest" });
}

/**
 * Registries allowed over plain HTTP: the caller's list (--insecure-registry), `III_INSECURE_REGISTRIES`
 * (comma-separated) and `insecureRegistries` in `<III_HOME>/registries.json`. Nothing else ever downgrades.
 */
export async function insecureList(options: EnsureImageOptions, home: string): Promise<string[]> {
  const env = options.env ?? process.env;
  const fromEnv = (env.III_INSECURE_REGISTRIES ?? "").split(",").map((s) => s.trim()).filter(Boolean);
  let fromConfig: string[] = [];
  try {
    const raw = JSON.parse(await readFile(join(home, "registries.json"), "utf8")) as { insecureRegistries?: unknown };
    if (Array.isArray(raw.insecureRegistries)) fromConfig = raw.insecureRegistries.filter((r): r is string => typeof r === "string");
  } catch (error) {
    if (errnoCode(error) !== "ENOENT") {
      throw new IiiError("ImagePullFailed", `${join(home, "registries.json")} is not valid: ${(error as Error).message}`, { cause: error });
    }
  }
  return [...(options.insecureRegistries ?? []), ...fromEnv, ...fromConfig];
}

function ensured(store: ImageStore, record: CachedImageRecord, reference: string, cached: boolean): EnsuredImage {
  const result: EnsuredImage = {
    digest: record.digest,
    rootfs: record.rootfs ?? store.rootfsDir(record.digest),
    config: record.config,
    sizeBytes: record.sizeBytes,
    reference,
    cached,
    skipped: record.skipped ?? [],
  };
  if (record.manifest) result.manifest = record.manifest;
  return result;
}

interface UnpackInput {
  digest: string;
  manifestBytes: Buffer;
  manifest: ImageManifest;
  configBytes: Buffer;
  layerPaths: string[];
  source: string;
  reference: string;
  /** Layer blobs were verified against their digests when stored. */
  blobsVerified?: boolean;
}

/** Unpacks into a staging dir and renames it into the cache: a crash at any point leaves no partial image. */
async function unpack(
  store: ImageStore,
  input: UnpackInput,
  options: EnsureImageOptions,
  ready?: (index: number) => Promise<void>,
): Promise<CachedImageRecord> {
  const rawConfig = parseJson(input.configBytes, `image ${input.reference} config`) as Record<string, unknown>;
  const arch = hostArchitecture();
  if (typeof rawConfig.architecture === "string" && rawConfig.architecture !== arch) {
    throw new IiiError("ImagePullFailed", `image ${input.reference} is for ${String(rawConfig.os ?? "linux")}/${rawConfig.architecture}; this host runs linux/${arch}`);
  }
  const rootfsSection = rawConfig.rootfs as { diff_ids?: unknown } | undefined;
  const diffIds = Array.isArray(rootfsSection?.diff_ids) ? (rootfsSection.diff_ids as unknown[]) : undefined;
  if (diffIds && diffIds.length !== input.manifest.layers.length) {
    throw new IiiError("ImageInvalid", `image ${input.reference}: config lists ${diffIds.length} diff_ids for ${input.manifest.layers.length} layers`);
  }
  const staging = await store.createStaging();
  try {
    const rootfs = join(staging, "rootfs");
    await mkdir(rootfs, { mode: 0o755 });
    const applyOptions: ApplyOptions = { keepSetuid: options.keepSetuid ?? false };
    if (options.limits) applyOptions.limits = options.limits;
    if (options.signal) applyOptions.signal = options.signal;
    const reports = await applyLayers(
      rootfs,
      input.manifest.layers.map((layer, i) => ({
        path: input.layerPaths[i]!,
        digest: layer.digest,
        verified: input.blobsVerified ?? false,
        ...(typeof diffIds?.[i] === "string" ? { diffId: diffIds[i] as string } : {}),
      })),
      applyOptions,
      ready,
    );
    const config = await runtimeConfigFromRootfs(rawConfig, rootfs, input.reference);
    const workerManifest = await readWorkerManifest(rootfs, input.reference);
    const record: CachedImageRecord = {
      digest: input.digest,
      source: input.source,
      references: [input.reference],
      config,
      sizeBytes: await treeSize(rootfs),
      blobs: [input.manifest.config.digest, ...input.manifest.layers.map((l) => l.digest)],
      createdAt: new Date().toISOString(),
      skipped: reports.flatMap((r) => r.skipped),
    };
    if (workerManifest) record.manifest = workerManifest;
    await writeFile(join(staging, "manifest.json"), input.manifestBytes);
    await writeFile(join(staging, "config.json"), input.configBytes);
    // image.json last: its presence is what marks an image directory complete.
    await writeFile(join(staging, "image.json"), `${JSON.stringify(record, null, 2)}\n`);
    options.signal?.throwIfAborted();
    if (!(await store.commit(staging, input.digest))) {
      const winner = await store.readRecord(input.digest);
      if (winner) return winner;
    }
    return record;
  } catch (error) {
    await rm(staging, { recursive: true, force: true });
    throw error;
  }
}

async function cachedRecord(store: ImageStore, digest: string | undefined): Promise<CachedImageRecord | undefined> {
  return digest ? store.readRecord(digest) : undefined;
}

async function ensureDir(store: ImageStore, path: string, image: string): Promise<EnsuredImage> {
  if (!isAbsolute(path)) throw new IiiError("InvalidReference", `${image}: the path must be absolute`);
  const stats = await stat(path).catch(() => undefined);
  if (!stats?.isDirectory()) throw new IiiError("RootfsNotFound", `${image}: ${path} is not a directory`);
  // Booted in place, as this user (root, for most), with this worker's shares and network: a rootfs another local
  // user can change would run their code (review rev6i: alice edits bin/sh of /home/alice/rootfs, root's worker runs
  // it as guest root beside root's writable share).
  assertRootfsOnlyOurs(path, image);
  const digest = sha256Digest(`dir:${path}`);
  // A dir: rootfs is used in place and can change at any time, so its config is read fresh on every call.
  const config = await runtimeConfigFromRootfs({}, path, image);
  const manifest = await readWorkerManifest(path, image);
  const previous = await store.readRecord(digest);
  const record: CachedImageRecord = {
    digest,
    source: "dir",
    references: [image],
    config,
    sizeBytes: previous?.sizeBytes ?? (await treeSize(path)),
    blobs: [],
    rootfs: path,
    createdAt: previous?.createdAt ?? new Date().toISOString(),
  };
  if (manifest) record.manifest = manifest;
  await mkdirs(store.imageDir(digest), PRIVATE_DIR_MODE);
  await writeAtomic(join(store.imageDir(digest), "image.json"), `${JSON.stringify(record, null, 2)}\n`);
  await store.writeTag({ reference: image, digest, updatedAt: new Date().toISOString() });
  return ensured(store, record, image, true);
}

async function ensureLocal(store: ImageStore, image: string, options: EnsureImageOptions): Promise<EnsuredImage> {
  const { kind, path, tag } = splitLocalSource(image);
  if (kind === "dir") return ensureDir(store, path, image);
  if (!isAbsolute(path)) throw new IiiError("InvalidReference", `${image}: the path must be absolute`);
  const pull = options.pull ?? "missing";
  const stats = await stat(path).catch(() => undefined);
  if (!stats) throw new IiiError("RootfsNotFound", `${image}: ${path} does not exist`);
  const stamp = `${stats.size}:${stats.mtimeMs}:${stats.ino}`;
  const tagRecord = await store.readTag(image);
  if (pull === "never" || (pull === "missing" && kind !== "oci" && tagRecord?.sourceStamp === stamp)) {
    const record = await cachedRecord(store, tagRecord?.digest);
    if (record) return ensured(store, record, image, true);
    if (pull === "never") throw new IiiError("ImagePullFailed", `${image} is not in the image cache and --pull=never was given`);
  }
  let scratch: string | undefined;
  try {
    let local: LocalImage;
    if (kind === "oci") {
      local = await readOciLayout(path, tag, image);
    } else {
      scratch = await store.createStaging();
      await extractImageArchive(path, scratch, image, options.signal);
      local = kind === "docker-archive" ? await readDockerArchive(scratch, image) : await readOciLayout(scratch, tag, image);
    }
    let record = await store.readRecord(local.digest);
    const cached = record !== undefined;
    record ??= await unpack(store, { ...local, source: kind, reference: image }, options);
    await store.writeTag({ reference: image, digest: local.digest, updatedAt: new Date().toISOString(), sourceStamp: stamp });
    return ensured(store, record, image, cached);
  } finally {
    if (scratch) await rm(scratch, { recursive: true, force: true });
  }
}

async function ensureRemote(store: ImageStore, image: string, options: EnsureImageOptions, home: string): Promise<EnsuredImage> {
  const ref = parseImageReference(image);
  const reference = canonicalReference(ref);
  const pull = options.pull ?? "missing";
  if (ref.digest) {
    // Content-addressed: cached under the digest itself, or (an index digest) under the platform manifest it chose.
    const record = (await store.readRecord(ref.digest)) ?? (await cachedRecord(store, (await store.readTag(reference))?.digest));
    if (record) return ensured(store, record, reference, true);
  } else if (pull !== "always") {
    const tagRecord = await store.readTag(reference);
    const record = await cachedRecord(store, tagRecord?.digest);
    if (record) return ensured(store, record, reference, true);
  }
  if (pull === "never") throw new IiiError("ImagePullFailed", `${reference} is not in the image cache and --pull=never was given`);

  const env = options.env ?? process.env;
  // Aborted when unpacking fails, so downloads still running stop instead of finishing for nothing.
  const abort = new AbortController();
  const client = new RegistryClient(ref.registry, {
    insecureRegistries: await insecureList(options, home),
    credentials: () => lookupCredentials(ref.registry, home, env),
    env,
    signal: options.signal ? AbortSignal.any([options.signal, abort.signal]) : abort.signal,
  });
  // The manifest stage: one GET, unless `add` just fetched this very manifest to look for a WASM artifact.
  let fetched = takeHandedOffManifest(reference) ?? (await client.getManifest(ref.repository, ref.digest ?? ref.tag ?? "latest"));
  let document = parseManifestDocument(fetched.bytes, `manifest of ${reference}`, fetched.mediaType);
  if (document.kind === "index") {
    const chosen = selectPlatform(document, reference);
    fetched = await client.getManifest(ref.repository, chosen.digest);
    document = parseManifestDocument(fetched.bytes, `manifest of ${reference} (${chosen.digest})`, chosen.mediaType);
    if (document.kind !== "manifest") throw new IiiError("ImageInvalid", `${reference}: index points to another index`);
  }
  const manifest = document;
  const digest = fetched.digest;
  let record = await store.readRecord(digest);
  const cached = record !== undefined;
  if (!record) {
    const configBytes = await client.getBlobBytes(ref.repository, manifest.config);
    // What the downloads may put on disk is known from the manifest: refuse it now if it cannot be an image we would
    // accept, or cannot fit, rather than after the disk is full.
    checkDeclaredLayerSizes(manifest.layers, { ...DEFAULT_LAYER_LIMITS, ...options.limits }, reference);
    const toDownload = new Map<string, number>();
    for (const layer of manifest.layers) if (!(await store.hasBlob(layer.digest))) toDownload.set(layer.digest, layer.size);
    await checkFreeSpace(store.root, [...toDownload.values()].reduce((a, b) => a + b, 0), reference);
    const progress = createPullProgress(options.progress ?? false);
    // Downloads run in the background (a few at a time) while layers unpack in order as soon as they are here.
    const downloads = new Map<string, Promise<void>>();
    const slots = new Semaphore(options.concurrency ?? 3);
    for (const layer of manifest.layers) {
      progress.addLayer(layer.digest, layer.size);
      if (downloads.has(layer.digest)) continue;
      const download = (async () => {
        if (await store.hasBlob(layer.digest)) {
          progress.complete(layer.digest);
          return;
        }
        await slots.run(() =>
          downloadOnce(store.blobPath(layer.digest), () =>
            client.downloadBlob(ref.repository, layer, store.blobPath(layer.digest), store.partialDir, (n) => progress.advance(layer.digest, n)),
          ),
        );
      })();
      download.catch(() => undefined);
      downloads.set(layer.digest, download);
    }
    // Bars end when the downloads do; unpacking (overlapped with them) reports one line.
    let stopped = false;
    const stopProgress = () => {
      if (stopped) return;
      stopped = true;
      progress.stop();
    };
    void Promise.allSettled(downloads.values()).then(() => {
      stopProgress();
      if (options.progress && !abort.signal.aborted) process.stderr.write(`unpacking ${manifest.layers.length} layer(s) of ${reference}\n`);
    });
    try {
      record = await unpack(
        store,
        {
          digest,
          manifestBytes: fetched.bytes,
          manifest,
          configBytes,
          layerPaths: manifest.layers.map((l) => store.blobPath(l.digest)),
          source: "registry",
          reference,
          blobsVerified: true,
        },
        options,
        (i) => downloads.get(manifest.layers[i]!.digest)!,
      );
    } catch (error) {
      abort.abort(error);
      throw error;
    } finally {
      await Promise.allSettled(downloads.values());
      stopProgress();
    }
  }
  if (!ref.digest || ref.digest !== digest) await store.writeTag({ reference, digest, updatedAt: new Date().toISOString() });
  return ensured(store, record, reference, cached);
}

/**
 * Makes `image` available as an unpacked rootfs in the cache and returns where it is and how to run it.
 * `image` is what the state file records: an OCI reference or dir:/oci:/oci-archive:/docker-archive: source.
 */
export async function ensureImage(image: string, options: EnsureImageOptions = {}): Promise<EnsuredImage> {
  const home = options.home ?? iiiHome(options.env ?? process.env);
  const store = new ImageStore(home);
  try {
    await store.init();
  } catch (error) {
    throw new IiiError("HomeUnwritable", `III_HOME ${home} is not writable: cannot create the image cache: ${(error as Error).message}`, { cause: error });
  }
  // A start already holds it (lifecycle.withStartLock): then this runs under that hold.
  return withImagesInUse(home, async () => {
    await store.sweep();
    const release = leanVm();
    try {
      return await (isLocalSource(image) ? ensureLocal(store, image, options) : ensureRemote(store, image, options, home));
    } finally {
      release();
    }
  });
}

/** The cached digest `image` currently resolves to, without any network access. */
export async function resolveCachedDigest(image: string, home: string = iiiHome()): Promise<string | undefined> {
  const store = new ImageStore(home);
  if (isLocalSource(image)) {
    if (image.startsWith("dir:")) return sha256Digest(`dir:${image.slice(4)}`);
    return (await store.readTag(image))?.digest;
  }
  const ref = parseImageReference(image);
  return (await store.readTag(canonicalReference(ref)))?.digest ?? ref.digest;
}

