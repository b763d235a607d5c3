/**
 * OCI artifacts whose one layer is a WebAssembly binary (wasm-to-oci, `wkg oci push`, the CNCF wasm OCI artifact
 * layout): pulled through the same registry client, credentials and blob cache as images, recorded as
 * `wasm:<blob path>` workers. The blob is content-addressed (its digest verified while streaming), and a small
 * reference record lets `add --pull never` and later adds find it without the network.
 */
import { mkdir, readFile, stat } from "node:fs/promises";
import { join } from "node:path";
import { IiiError } from "../errors.js";
import { isLocalSource, parseImageReference } from "./oci/reference.js";
import { ImageStore, writeAtomic } from "./cache/store.js";
import { sha256Digest } from "./digest.js";
import { checkFreeSpace, MAX_WASM_ARTIFACT_BYTES } from "./declared-size.js";
import { canonicalReference, insecureList, type PullPolicy } from "./ensure.js";
import { handOffManifest } from "./manifest-handoff.js";
import { parseDescriptor, parseJson, type Descriptor } from "./oci/manifest.js";
import { RegistryClient } from "./registry/client.js";
import { lookupCredentials } from "./registry/credentials.js";

export const WASM_LAYER_TYPES: ReadonlySet<string> = new Set([
  "application/wasm",
  "application/vnd.wasm.content.layer.v1+wasm",
  "application/vnd.bytecodealliance.wasm.component.layer.v0+wasm",
]);
const WASM_CONFIG_TYPES: ReadonlySet<string> = new Set(["application/vnd.wasm.config.v0+json", "application/vnd.wasm.config.v1+json"]);
/** Platforms an index may list a WASM artifact under. */
const WASM_PLATFORM_OS = new Set(["wasi", "wasip1", "wasip2"]);
const MAX_WASM_BYTES = 1024 * 1024 * 1024;

export interface WasmArtifact {
  /** The canonical reference it was pulled as. */
  reference: string;
  /** Digest of the manifest. */
  digest: string;
  /** The verified binary in the blob cache. */
  path: string;
  cached: boolean;
}

interface ArtifactRecord {
  reference: string;
  digest: string;
  layer: string;
}

/**
 * The wasm layer of a manifest document, or undefined when it is not a WASM artifact. A manifest whose config
 * says WASM but whose layers are not exactly one wasm binary is refused, naming what it holds.
 */
export function wasmArtifactLayer(bytes: Uint8Array, what: string): Descriptor | undefined {
  const doc = parseJson(bytes, what) as { config?: unknown; layers?: unknown };
  if (!Array.isArray(doc.layers) || doc.config === undefined) return undefined;
  const config = parseDescriptor(doc.config, `${what}.config`);
  const layers = doc.layers.map((l, i) => parseDescriptor(l, `${what}.layers[${i}]`));
  const wasm = layers.filter((l) => WASM_LAYER_TYPES.has(l.mediaType));
  if (wasm.length === 0 && !WASM_CONFIG_TYPES.has(config.mediaType)) return undefined;
  if (wasm.length !== 1 || layers.length !== 1) {
    throw new IiiError("WasmInvalid", `${what}: a WASM artifact must have exactly one wasm layer (it has ${layers.map((l) => l.mediaType).join(", ") || "none"})`);
  }
  if (wasm[0]!.size > MAX_WASM_BYTES) throw new IiiError("WasmInvalid", `${what}: the wasm layer is ${wasm[0]!.size} bytes (at most ${MAX_WASM_BYTES})`);
  return wasm[0];
}

function recordPath(store: ImageStore, reference: string): string {
  return join(store.root, "wasm-refs", `${sha256Digest(reference).slice(7)}.json`);
}

async function cachedArtifact(store: ImageStore, reference: string): Promise<WasmArtifact | undefined> {
  let record: ArtifactRecord;
  try {
    record = JSON.parse(await readFile(recordPath(store, reference), "utf8")) as ArtifactRecord;
  } catch {
    return undefined;
  }
  const path = store.blobPath(record.layer);
  if (!(await stat(path).catch(() => undefined))?.isFile()) return undefined;
  return { reference, digest: record.digest, path, cached: true };
}

export interface PullWasmOptions {
  home: string;
  env: NodeJS.ProcessEnv;
  pull: PullPolicy;
  insecureRegistries?: string[];
}

/**
 * Pulls `image` if it names a WASM artifact on a registry; undefined for anything else (an image, a local
 * source). A reference already cached as a container image is not asked for again (no extra request).
 */
export async function pullWasmArtifact(image: string, options: PullWasmOptions): Promise<WasmArtifact | undefined> {
  if (isLocalSource(image) || image.startsWith("wasm:")) return undefined;
  const ref = parseImageReference(image);
  const reference = canonicalReference(ref);
  const store = new ImageStore(options.home);
  if (options.pull !== "always" || ref.digest) {
    const cached = await cachedArtifact(store, reference);
    if (cached) return cached;
    if ((await store.readTag(reference)) !== undefined || (ref.digest && (await store.hasImage(ref.digest)))) return undefined;
  }
  if (options.pull === "never") return undefined;
  // Docker Hub counts manifest requests against its pull limit, and its wasm images are container images
  // (a wasi/wasm platform with ordinary layers): its references are not asked twice.
  if (ref.registry === "docker.io" || ref.registry === "index.docker.io") return undefined;
  const client = new RegistryClient(ref.registry, {
    insecureRegistries: await insecureList({ insecureRegistries: options.insecureRegistries ?? [], env: options.env }, options.home),
    credentials: () => lookupCredentials(ref.registry, options.home, options.env),
  });
  const top = await client.getManifest(ref.repository, ref.digest ?? ref.tag ?? "latest");
  let fetched = top;
  const document = parseJson(top.bytes, `manifest of ${reference}`) as { manifests?: unknown };
  if (Array.isArray(document.manifests)) {
    // an index: a WASM artifact is listed under a wasi platform; anything else is a container image's index
    const entries = document.manifests.map((m, i) => parseDescriptor(m, `manifest of ${reference}.manifests[${i}]`));
    const chosen = entries.find((m) => m.platform && WASM_PLATFORM_OS.has(m.platform.os) && m.platform.architecture === "wasm");
    if (!chosen) {
      handOffManifest(reference, top);
      return undefined;
    }
    fetched = await client.getManifest(ref.repository, chosen.digest);
  }
  const layer = wasmArtifactLayer(fetched.bytes, `manifest of ${reference}`);
  if (!layer) {
    // a container image: ensureImage's manifest stage takes this document instead of fetching it again
    if (fetched === top) handOffManifest(reference, top);
    return undefined;
  }
  if (layer.size > MAX_WASM_ARTIFACT_BYTES) {
    throw new IiiError("WasmInvalid", `${reference}: the WebAssembly layer declares ${layer.size} bytes, more than the ${MAX_WASM_ARTIFACT_BYTES} bytes V8 can compile; not downloaded`);
  }
  await store.init();
  const path = store.blobPath(layer.digest);
  if (!(await store.hasBlob(layer.digest))) {
    await checkFreeSpace(store.root, layer.size, reference);
    await client.downloadBlob(ref.repository, layer, path, store.partialDir);
  }
  await mkdir(join(store.root, "wasm-refs"), { recursive: true, mode: 0o700 });
  await writeAtomic(recordPath(store, reference), `${JSON.stringify({ reference, digest: fetched.digest, layer: layer.digest } satisfies ArtifactRecord)}\n`);
  return { reference, digest: fetched.digest, path, cached: false };
}
