/**
 * OCI images for workers: `ensureImage(image)` turns a reference or a local source into a read-only rootfs in
 * the digest-keyed cache (~/.iii/images/sha256/<hex>/rootfs) plus the image's runtime config.
 *
 *   oci/        manifest, index and platform parsing (pure)
 *   registry/   distribution client: auth challenges, credentials, resumable verified blob downloads
 *   sources/    oci:, oci-archive:, docker-archive: (dir: is used in place)
 *   layers/     layer policy (pure), rootfs-confined path resolution, scan (the one decompression) then apply
 *   config/     image config → ImageRuntimeConfig (User through the image's /etc/passwd), /iii/worker.yaml
 *   cache/      the on-disk store: staging + rename, tags, blobs, sweep of dead processes' leftovers
 *   ensure.ts   the orchestration; catalog.ts lists and prunes
 */
export { ensureImage, resolveCachedDigest, canonicalReference, type EnsureImageOptions, type EnsuredImage, type PullPolicy } from "./ensure.js";
export { listImages, pruneImages, type CachedImageInfo, type PruneResult } from "../catalog/catalog.js";
export {
  mergeEnv,
  workloadArgv,
  parseImageConfig,
  resolveUser,
  parseWorkerManifest,
  type ImageRuntimeConfig,
  type ImageUser,
  type ExposedPort,
  type WorkerManifest,
} from "./config/runtime-config.js";
export { applyLayers, scanLayer, RootfsBuilder, layerLabel, type LayerSource, type ApplyOptions, type LayerReport } from "./layers/apply.js";
export { DEFAULT_LAYER_LIMITS, planEntry, type LayerLimits, type PlannedEntry } from "./layers/policy.js";
export { RegistryClient, type RegistryClientOptions } from "./registry/client.js";
export { lookupCredentials, storeCredentials, removeCredentials, type RegistryCredentials } from "./registry/credentials.js";
export { parseAuthChallenges, type AuthChallenge } from "./registry/challenge.js";
export { selectPlatform, hostArchitecture, MediaType, type Platform, type Descriptor } from "./oci/manifest.js";
export { loginRegistry, type LoginOptions } from "./registry/login.js";
export { formatImageSummary } from "./summary.js";
export { splitLocalSource } from "./sources/oci-layout.js";
