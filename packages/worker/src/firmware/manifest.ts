import manifestJson from "../../../../firmware/manifest.json" with { type: "json" };
import { IiiError } from "../errors.js";

/** A pinned libkrunfw build for one platform (`firmware/manifest.json`). */
export interface FirmwarePlatformEntry {
  /** The file name that is installed and looked for, e.g. `libkrunfw.so.5.6.1`. */
  file: string;
  /** The library's SONAME (`libkrunfw.so.5`); installs create it as a symlink. */
  soname: string;
  size: number;
  sha256: string;
  url: string;
  /** When `url` is an archive: the member holding `file`, and the archive's own size and digest. */
  archive?: { format: "tar.gz"; member: string; size?: number; sha256?: string };
}

export interface FirmwareManifest {
  name: string;
  version: string;
  abi: number;
  platforms: Record<string, FirmwarePlatformEntry>;
}

export const FIRMWARE_MANIFEST: FirmwareManifest = manifestJson as FirmwareManifest;

/** `linux-x86_64`, `linux-aarch64`, `darwin-aarch64`: the manifest's platform keys (names as in iii). */
export function firmwarePlatform(platform: string = process.platform, arch: string = process.arch): string {
  const cpu = arch === "x64" ? "x86_64" : arch === "arm64" ? "aarch64" : arch;
  return `${platform}-${cpu}`;
}

export function platformEntry(manifest: FirmwareManifest, platform: string): FirmwarePlatformEntry {
  const entry = manifest.platforms[platform];
  if (!entry) {
    throw new IiiError(
      "FirmwareNotFound",
      `no pinned libkrunfw ${manifest.version} for ${platform} (firmware/manifest.json has ${Object.keys(manifest.platforms).join(", ")}); set III_LIBKRUNFW_PATH`,
    );
  }
  return entry;
}
