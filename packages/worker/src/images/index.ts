export { ensureImage, resolveCachedDigest, canonicalReference, type EnsureImageOptions, type EnsuredImage, type PullPolicy } from "./ensure.js";
export { listImages, pruneImages, type CachedImageInfo, type PruneResult } from "./catalog.js";
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
