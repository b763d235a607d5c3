export { FIRMWARE_MANIFEST, firmwarePlatform, platformEntry, type FirmwareManifest, type FirmwarePlatformEntry } from "./manifest.js";
export {
  FirmwareResolver,
  resolveFirmware,
  DEFAULT_SYSTEM_LIB_DIRS,
  FIRMWARE_SOURCES,
  type FirmwareCandidate,
  type FirmwareResolverOptions,
  type FirmwareSource,
  type ResolvedFirmware,
} from "./resolver.js";
export { downloadFirmware, linkSonames, type DownloadFirmwareOptions, type DownloadProgress } from "./download.js";
export { ensureKernel, kernelCacheDir, type EnsureKernelOptions, type KernelImage } from "./kernel.js";
export { extractKernelImage, type RawKernelInfo } from "./extract.js";
export { buildPvhElfHeader, parsePvhElfHeader, findXenPhys32Entry, XEN_ELFNOTE_PHYS32_ENTRY, type PvhElfLayout } from "./pvh-elf.js";
export { describeFirmware, type FirmwareDescription } from "./describe.js";
export { sha256File } from "./digest.js";
export { resolveKernel } from "./resolve-kernel.js";
