import { existsSync, readdirSync, statSync } from "node:fs";
import { mkdirsSync } from "../host/mkdirs.js";
import { createRequire } from "node:module";
import { dirname, join } from "node:path";
import { IiiError, errnoCode } from "../errors.js";
import { iiiHome } from "../paths.js";
import { digestMismatch, sha256FileMemo } from "./digest.js";
// download.ts (tar-stream, zlib, the registry proxy) loads only for a download: `start` with firmware at hand stays light.
import type { DownloadProgress } from "./download.js";
import { FIRMWARE_MANIFEST, firmwarePlatform, platformEntry, type FirmwareManifest, type FirmwarePlatformEntry } from "./manifest.js";

/** Where a libkrunfw can come from, in the order of DESIGN §4. */
export type FirmwareSource = "env" | "home" | "system" | "npm" | "download";

export const FIRMWARE_SOURCES: readonly FirmwareSource[] = ["env", "home", "system", "npm", "download"];

export interface FirmwareCandidate {
  source: FirmwareSource;
  /** What was looked at: a path, a list of dirs, a package name or a URL. */
  location: string;
  /**
   * `found`: a file that matches the pinned sha256. `absent`: nothing there. `mismatch`: a file whose digest
   * differs (an error: it is never used). `skipped`: not consulted because an earlier source won, or disabled.
   * `available`: the download source, not attempted (describe only).
   */
  status: "found" | "absent" | "mismatch" | "unreadable" | "skipped" | "available";
  reason: string;
  path?: string;
  sha256?: string;
}

export interface ResolvedFirmware {
  source: FirmwareSource;
  /** The libkrunfw library file. */
  path: string;
  sha256: string;
  version: string;
  /** Every source, in order, with why it did or did not win. */
  candidates: FirmwareCandidate[];
}

export interface FirmwareResolverOptions {
  env?: NodeJS.ProcessEnv;
  manifest?: FirmwareManifest;
  /** Manifest platform key; default from the running process (`linux-x86_64`). */
  platform?: string;
  /** System library dirs; default the usual Linux and Homebrew ones. */
  systemDirs?: string[];
  /** Directory of the npm firmware package, `null` to skip it; default resolved with require. */
  npmPackageDir?: string | null;
  /** Allow the download source (default: unless `III_LIBKRUNFW_NO_DOWNLOAD=1`). */
  download?: boolean;
  downloadTimeoutMs?: number;
  onDownloadProgress?: (progress: DownloadProgress) => void;
  /** Remember verified digests in `<III_HOME>/cache/firmware-digests.json` (default true). */
  digestMemo?: boolean;
  /** Called once before a download starts (for a one-line notice). */
  onDownloadStart?: (url: string) => void;
}

export const DEFAULT_SYSTEM_LIB_DIRS = [
  "/usr/lib64",
  "/usr/lib/x86_64-linux-gnu",
  "/usr/lib/aarch64-linux-gnu",
  "/usr/local/lib",
  "/usr/lib",
  "/opt/homebrew/lib",
  "/opt/homebrew/opt/libkrunfw/lib",
];

/** npm package that ships libkrunfw for each platform (optional dependency of @iii/worker). */
const NPM_PACKAGES: Record<string, string> = {
  "linux-x86_64": "@superradcompany/microsandbox-linux-x64-gnu",
  "linux-aarch64": "@superradcompany/microsandbox-linux-arm64-gnu",
  "darwin-aarch64": "@superradcompany/microsandbox-darwin-arm64",
};

/**
 * Finds the pinned libkrunfw: first hit wins, and every hit is checked against the manifest's sha256. A file
 * that is there but has another digest is an error naming both digests, never a silent fallback: it is
 * either a corrupt copy or not the kernel the flags were measured with.
 */
export class FirmwareResolver {
  readonly env: NodeJS.ProcessEnv;
  readonly manifest: FirmwareManifest;
  readonly platform: string;
  private readonly options: FirmwareResolverOptions;

  constructor(options: FirmwareResolverOptions = {}) {
    this.options = options;
    this.env = options.env ?? process.env;
    this.manifest = options.manifest ?? FIRMWARE_MANIFEST;
    this.platform = options.platform ?? firmwarePlatform();
  }

  get libDir(): string {
    return join(iiiHome(this.env), "lib");
  }

  get downloadEnabled(): boolean {
    return this.options.download ?? this.env.III_LIBKRUNFW_NO_DOWNLOAD !== "1";
  }

  /** Resolves, downloading as the last resort. Throws FirmwareNotFound / FirmwareCorrupt / FirmwareDownloadFailed. */
  async resolve(): Promise<ResolvedFirmware> {
    const { winner, candidates } = await this.walk(true);
    return winner ?? this.fail(candidates);
  }

  /** Every source's status without downloading anything (for `doctor`). Never throws for a mismatch. */
  async inspect(): Promise<{ winner: ResolvedFirmware | undefined; candidates: FirmwareCandidate[] }> {
    return this.walk(false);
  }

  private async walk(allowDownload: boolean): Promise<{ winner: ResolvedFirmware | undefined; candidates: FirmwareCandidate[] }> {
    const entry = platformEntry(this.manifest, this.platform);
    const candidates: FirmwareCandidate[] = [];
    let winner: ResolvedFirmware | undefined;
    const probes: Array<[FirmwareSource, () => Promise<FirmwareCandidate>]> = [
      ["env", () => this.probeEnv(entry)],
      ["home", () => this.probeFiles("home", join(this.libDir, entry.file), [join(this.libDir, entry.file)], entry)],
      ["system", () => this.probeSystem(entry)],
      ["npm", () => this.probeNpm(entry)],
    ];
    for (const [source, probe] of probes) {
      if (winner) {
        candidates.push({ source, location: "", status: "skipped", reason: `not consulted: ${winner.source} came first` });
        continue;
      }
      const candidate = await probe();
      candidates.push(candidate);
      if (candidate.status === "found") winner = this.resolved(candidate, candidates);
      else if (allowDownload && (candidate.status === "mismatch" || candidate.status === "unreadable")) this.fail(candidates);
      else if (allowDownload && source === "env" && this.env.III_LIBKRUNFW_PATH) this.fail(candidates);
    }
    if (winner) {
      candidates.push({ source: "download", location: entry.url, status: "skipped", reason: `not needed: ${winner.source} came first` });
    } else if (!this.downloadEnabled) {
      candidates.push({ source: "download", location: entry.url, status: "skipped", reason: "downloads disabled (III_LIBKRUNFW_NO_DOWNLOAD=1)" });
    } else if (!allowDownload) {
      candidates.push({ source: "download", location: entry.url, status: "available", reason: `would download libkrunfw ${this.manifest.version} (${entry.size} bytes) on first start` });
    } else {
      this.options.onDownloadStart?.(entry.url);
      const { downloadFirmware } = await import("./download.js");
      const path = await downloadFirmware(this.manifest, entry, {
        libDir: this.libDir,
        timeoutMs: this.options.downloadTimeoutMs,
        onProgress: this.options.onDownloadProgress,
        env: this.env,
      });
      const candidate: FirmwareCandidate = { source: "download", location: entry.url, status: "found", reason: `downloaded and verified, installed at ${path}`, path, sha256: entry.sha256 };
      candidates.push(candidate);
      winner = this.resolved(candidate, candidates);
    }
    return { winner, candidates };
  }

  private resolved(candidate: FirmwareCandidate, candidates: FirmwareCandidate[]): ResolvedFirmware {
    return { source: candidate.source, path: candidate.path!, sha256: candidate.sha256!, version: this.manifest.version, candidates };
  }

  private fail(candidates: FirmwareCandidate[]): never {
    const bad = candidates.find((c) => c.status === "mismatch");
    if (bad) throw digestMismatch(`libkrunfw at ${bad.path} (${bad.source})`, bad.sha256!, platformEntry(this.manifest, this.platform).sha256);
    const unreadable = candidates.find((c) => c.status === "unreadable");
    if (unreadable) throw new IiiError("FirmwareNotFound", `libkrunfw at ${unreadable.path} (${unreadable.source}): ${unreadable.reason}`);
    const env = candidates.find((c) => c.source === "env");
    if (env && this.env.III_LIBKRUNFW_PATH) throw new IiiError("FirmwareNotFound", `III_LIBKRUNFW_PATH=${this.env.III_LIBKRUNFW_PATH}: ${env.reason}`);
    const entry = platformEntry(this.manifest, this.platform);
    throw new IiiError(
      "FirmwareNotFound",
      `libkrunfw ${this.manifest.version} (${entry.file}) not found (III_LIBKRUNFW_PATH, ${this.libDir}, system lib dirs, npm package) and downloads are disabled; set III_LIBKRUNFW_PATH`,
    );
  }

  private async probeEnv(entry: FirmwarePlatformEntry): Promise<FirmwareCandidate> {
    const value = this.env.III_LIBKRUNFW_PATH;
    if (!value) return { source: "env", location: "III_LIBKRUNFW_PATH", status: "absent", reason: "III_LIBKRUNFW_PATH is not set" };
    let isDir: boolean;
    try {
      isDir = statSync(value).isDirectory();
    } catch (error) {
      return { source: "env", location: value, status: "absent", reason: errnoCode(error) === "ENOENT" ? "no such file or directory" : (error as Error).message };
    }
    if (!isDir) return this.probeFiles("env", value, [value], entry);
    // A directory: the pinned file name, then the SONAME and the dev symlink (a distro's layout).
    const names = [entry.file, entry.soname, entry.soname.replace(/\.so\.\d+$/, ".so")];
    const found = names.map((name) => join(value, name)).filter((path) => existsSync(path));
    if (found.length === 0) return { source: "env", location: value, status: "absent", reason: `directory holds none of ${names.join(", ")}` };
    return this.probeFiles("env", value, found.slice(0, 1), entry);
  }

  private async probeSystem(entry: FirmwarePlatformEntry): Promise<FirmwareCandidate> {
    const dirs = this.options.systemDirs ?? DEFAULT_SYSTEM_LIB_DIRS;
    const paths = dirs.map((dir) => join(dir, entry.file));
    const candidate = await this.probeFiles("system", dirs.join(":"), paths, entry);
    if (candidate.status === "absent") {
      const others = dirs.flatMap((dir) => safeReaddir(dir).filter((n) => /^libkrunfw\.(so\.\d+\.\d+\.\d+|\d+\.dylib)$/.test(n)).map((n) => join(dir, n)));
      if (others.length > 0) candidate.reason += `; other versions present, not pinned: ${others.join(", ")}`;
    }
    return candidate;
  }

  private async probeNpm(entry: FirmwarePlatformEntry): Promise<FirmwareCandidate> {
    const pkg = NPM_PACKAGES[this.platform];
    let dir = this.options.npmPackageDir;
    if (dir === null) return { source: "npm", location: pkg ?? "(none)", status: "skipped", reason: "npm package lookup disabled" };
    if (dir === undefined) {
      if (!pkg) return { source: "npm", location: "(none)", status: "absent", reason: `no npm firmware package for ${this.platform}` };
      try {
        dir = dirname(createRequire(import.meta.url).resolve(`${pkg}/package.json`));
      } catch {
        return { source: "npm", location: pkg, status: "absent", reason: `optional dependency ${pkg} is not installed` };
      }
    }
    return this.probeFiles("npm", pkg ?? dir, [join(dir, "lib", entry.file)], entry);
  }

  /** The first existing path among `paths`, verified. */
  private async probeFiles(source: FirmwareSource, location: string, paths: string[], entry: FirmwarePlatformEntry): Promise<FirmwareCandidate> {
    for (const path of paths) {
      let size: number;
      try {
        const st = statSync(path);
        if (!st.isFile()) continue;
        size = st.size;
      } catch {
        continue;
      }
      let digest: string;
      try {
        const memo = this.options.digestMemo === false ? undefined : join(iiiHome(this.env), "cache", "firmware-digests.json");
        // III_HOME itself, when the memo makes it, is private like the image cache's (a read-only home: no memo).
        if (memo) tryMkdirsSync(iiiHome(this.env), 0o700);
        digest = await sha256FileMemo(path, memo);
      } catch (error) {
        return { source, location, status: "unreadable", reason: `cannot read: ${(error as Error).message}`, path };
      }
      if (digest !== entry.sha256) {
        return { source, location, status: "mismatch", reason: `sha256 ${digest} (${size} bytes), expected ${entry.sha256}`, path, sha256: digest };
      }
      return { source, location, status: "found", reason: `sha256 matches libkrunfw ${this.manifest.version}`, path, sha256: digest };
    }
    return { source, location, status: "absent", reason: paths.length === 1 ? "not there" : `no ${entry.file} in any of them` };
  }
}

function safeReaddir(dir: string): string[] {
  try {
    return readdirSync(dir);
  } catch {
    return [];
  }
}

/** `new FirmwareResolver(options).resolve()`. */
export function resolveFirmware(options: FirmwareResolverOptions = {}): Promise<ResolvedFirmware> {
  return new FirmwareResolver(options).resolve();
}

function tryMkdirsSync(path: string, mode: number): void {
  try {
    mkdirsSync(path, mode);
  } catch {
    // the memo write that follows fails quietly too
  }
}
