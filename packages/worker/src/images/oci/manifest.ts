import { IiiError } from "../../errors.js";
import { requireSha256Digest } from "../digest.js";

export const MediaType = {
  OciIndex: "application/vnd.oci.image.index.v1+json",
  OciManifest: "application/vnd.oci.image.manifest.v1+json",
  OciConfig: "application/vnd.oci.image.config.v1+json",
  OciLayer: "application/vnd.oci.image.layer.v1.tar",
  OciLayerGzip: "application/vnd.oci.image.layer.v1.tar+gzip",
  OciLayerZstd: "application/vnd.oci.image.layer.v1.tar+zstd",
  OciLayerNondistributable: "application/vnd.oci.image.layer.nondistributable.v1.tar",
  OciLayerNondistributableGzip: "application/vnd.oci.image.layer.nondistributable.v1.tar+gzip",
  DockerManifestList: "application/vnd.docker.distribution.manifest.list.v2+json",
  DockerManifest: "application/vnd.docker.distribution.manifest.v2+json",
  DockerConfig: "application/vnd.docker.container.image.v1+json",
  DockerLayerGzip: "application/vnd.docker.image.rootfs.diff.tar.gzip",
  DockerLayerForeignGzip: "application/vnd.docker.image.rootfs.foreign.diff.tar.gzip",
} as const;

export const MANIFEST_ACCEPT = [MediaType.OciIndex, MediaType.OciManifest, MediaType.DockerManifestList, MediaType.DockerManifest];

const INDEX_TYPES = new Set<string>([MediaType.OciIndex, MediaType.DockerManifestList]);
const MANIFEST_TYPES = new Set<string>([MediaType.OciManifest, MediaType.DockerManifest]);
const LAYER_TYPES = new Set<string>([
  MediaType.OciLayer,
  MediaType.OciLayerGzip,
  MediaType.OciLayerZstd,
  MediaType.OciLayerNondistributable,
  MediaType.OciLayerNondistributableGzip,
  MediaType.DockerLayerGzip,
  MediaType.DockerLayerForeignGzip,
  "application/vnd.docker.image.rootfs.diff.tar",
]);

/** The largest manifest or config we accept: real ones are a few KiB. */
export const MAX_JSON_BYTES = 4 * 1024 * 1024;

export interface Platform {
  os: string;
  architecture: string;
  variant?: string;
}

export interface Descriptor {
  mediaType: string;
  digest: string;
  size: number;
  platform?: Platform;
  annotations?: Record<string, string>;
}

export interface ImageIndex {
  kind: "index";
  mediaType: string;
  manifests: Descriptor[];
}

export interface ImageManifest {
  kind: "manifest";
  mediaType: string;
  config: Descriptor;
  layers: Descriptor[];
}

function asObject(value: unknown, what: string): Record<string, unknown> {
  if (value === null || typeof value !== "object" || Array.isArray(value)) {
    throw new IiiError("ImageInvalid", `${what} is not a JSON object`);
  }
  return value as Record<string, unknown>;
}

export function parseJson(bytes: Uint8Array, what: string): unknown {
  try {
    return JSON.parse(Buffer.from(bytes).toString("utf8"));
  } catch (error) {
    throw new IiiError("ImageInvalid", `${what} is not valid JSON: ${(error as Error).message}`, { cause: error });
  }
}

export function parseDescriptor(value: unknown, what: string): Descriptor {
  const record = asObject(value, what);
  const digest = requireSha256Digest(record.digest, what);
  if (typeof record.mediaType !== "string") throw new IiiError("ImageInvalid", `${what} has no mediaType`);
  if (typeof record.size !== "number" || !Number.isSafeInteger(record.size) || record.size < 0) {
    throw new IiiError("ImageInvalid", `${what} has no valid size`);
  }
  const descriptor: Descriptor = { mediaType: record.mediaType, digest, size: record.size };
  if (record.platform !== undefined) {
    const p = asObject(record.platform, `${what}.platform`);
    if (typeof p.os === "string" && typeof p.architecture === "string") {
      descriptor.platform = { os: p.os, architecture: p.architecture };
      if (typeof p.variant === "string") descriptor.platform.variant = p.variant;
    }
  }
  if (record.annotations !== undefined) {
    const a = asObject(record.annotations, `${what}.annotations`);
    descriptor.annotations = Object.fromEntries(Object.entries(a).filter((e): e is [string, string] => typeof e[1] === "string"));
  }
  return descriptor;
}

/**
 * Parses an image index or manifest. The media type comes from the document, else from the transport
 * (Content-Type / descriptor), else from its shape: OCI allows an index or manifest without `mediaType`.
 */
export function parseManifestDocument(bytes: Uint8Array, what: string, transportType?: string): ImageIndex | ImageManifest {
  const record = asObject(parseJson(bytes, what), what);
  if (record.schemaVersion !== 2) {
    throw new IiiError("ImageInvalid", `${what}: unsupported schemaVersion ${JSON.stringify(record.schemaVersion)} (only schema 2 images are supported)`);
  }
  const declared = typeof record.mediaType === "string" ? record.mediaType : undefined;
  const mediaType =
    declared ??
    (transportType && (INDEX_TYPES.has(transportType) || MANIFEST_TYPES.has(transportType)) ? transportType : undefined) ??
    (Array.isArray(record.manifests) ? MediaType.OciIndex : MediaType.OciManifest);
  if (INDEX_TYPES.has(mediaType)) {
    if (!Array.isArray(record.manifests)) throw new IiiError("ImageInvalid", `${what}: index without "manifests"`);
    return { kind: "index", mediaType, manifests: record.manifests.map((m, i) => parseDescriptor(m, `${what}.manifests[${i}]`)) };
  }
  if (MANIFEST_TYPES.has(mediaType)) {
    if (!Array.isArray(record.layers)) throw new IiiError("ImageInvalid", `${what}: manifest without "layers"`);
    const config = parseDescriptor(record.config, `${what}.config`);
    const layers = record.layers.map((l, i) => parseDescriptor(l, `${what}.layers[${i}]`));
    for (const layer of layers) {
      if (!LAYER_TYPES.has(layer.mediaType)) {
        if (/wasm/.test(layer.mediaType)) {
          throw new IiiError("ImageInvalid", `${what} is a WASM artifact (layer ${layer.mediaType}), not a container image: \`iii-worker add\` it (without --no-pull) to run it as a WASM worker`);
        }
        throw new IiiError("ImageInvalid", `${what}: layer ${layer.digest} has unsupported media type ${layer.mediaType}`);
      }
    }
    return { kind: "manifest", mediaType, config, layers };
  }
  throw new IiiError("ImageInvalid", `${what}: unsupported media type ${mediaType}`);
}

/** `amd64` / `arm64` in OCI terms for this host. */
export function hostArchitecture(arch: string = process.arch): string {
  switch (arch) {
    case "x64":
      return "amd64";
    case "arm64":
      return "arm64";
    case "arm":
      return "arm";
    case "ia32":
      return "386";
    default:
      return arch;
  }
}

export function formatPlatform(p: Platform | undefined): string {
  if (!p) return "unknown";
  return `${p.os}/${p.architecture}${p.variant ? `/${p.variant}` : ""}`;
}

/**
 * Picks `linux/<arch>` from an index. arm64 prefers variant v8 (or none); attestation manifests
 * (`unknown/unknown`) are never chosen. Throws ImagePullFailed listing what the index offers.
 */
export function selectPlatform(index: ImageIndex, what: string, arch: string = hostArchitecture()): Descriptor {
  const candidates = index.manifests.filter(
    (m) => MANIFEST_TYPES.has(m.mediaType) && m.platform?.os === "linux" && m.platform.architecture === arch,
  );
  const preferred = candidates.find((m) => !m.platform?.variant || m.platform.variant === "v8") ?? candidates[0];
  if (preferred) return preferred;
  const available = [...new Set(index.manifests.filter((m) => m.platform).map((m) => formatPlatform(m.platform)))];
  throw new IiiError(
    "ImagePullFailed",
    `${what}: no linux/${arch} image in the index; available platforms: ${available.length ? available.join(", ") : "none declared"}`,
  );
}
