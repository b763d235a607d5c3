import { createHash } from "node:crypto";
import { createReadStream, createWriteStream } from "node:fs";
import { chmod, rename, rm, stat, symlink, unlink } from "node:fs/promises";
import { dirname, join } from "node:path";
import { Readable, Transform } from "node:stream";
import { pipeline } from "node:stream/promises";
import { createGunzip } from "node:zlib";
import { randomBytes } from "node:crypto";
import * as tar from "tar-stream";
import { IiiError } from "../errors.js";
import { mkdirs } from "../host/mkdirs.js";
import { registryFetch } from "../images/registry/proxy.js";
import { digestMismatch, sha256File } from "./digest.js";
import type { FirmwareManifest, FirmwarePlatformEntry } from "./manifest.js";

export interface DownloadProgress {
  receivedBytes: number;
  totalBytes: number | undefined;
}

export interface DownloadFirmwareOptions {
  /** Directory to install into (`~/.iii/lib`). */
  libDir: string;
  timeoutMs?: number;
  onProgress?: (progress: DownloadProgress) => void;
  userAgent?: string;
  /** Where HTTPS_PROXY/HTTP_PROXY/NO_PROXY are read (default process.env). */
  env?: NodeJS.ProcessEnv;
}

/**
 * Downloads the pinned firmware, checks size and sha256 of what was received (and of the archive, when the
 * manifest pins it) and only then installs it as `<libDir>/<file>` with a rename, plus the SONAME symlinks.
 * Nothing is left in `libDir` on failure.
 */
export async function downloadFirmware(
  manifest: FirmwareManifest,
  entry: FirmwarePlatformEntry,
  options: DownloadFirmwareOptions,
): Promise<string> {
  const { libDir } = options;
  try {
    // `<III_HOME>/lib`: III_HOME itself, when this makes it, is private like the image cache's.
    await mkdirs(dirname(libDir), 0o700);
    await mkdirs(libDir);
  } catch (error) {
    throw new IiiError("HomeUnwritable", `cannot create ${libDir}: ${(error as Error).message}`, { cause: error });
  }
  const tag = `${process.pid}.${randomBytes(4).toString("hex")}`;
  const downloadPath = join(libDir, `.${entry.file}.${tag}.download`);
  const extractedPath = join(libDir, `.${entry.file}.${tag}.tmp`);
  const finalPath = join(libDir, entry.file);
  try {
    const received = await fetchToFile(entry.url, downloadPath, options);
    let candidate = downloadPath;
    if (entry.archive) {
      if (entry.archive.size !== undefined && received.bytes !== entry.archive.size) {
        throw new IiiError(
          "FirmwareDownloadFailed",
          `download of ${entry.url} is ${received.bytes} bytes, expected ${entry.archive.size} (truncated or wrong file)`,
        );
      }
      if (entry.archive.sha256 && received.sha256 !== entry.archive.sha256) {
        throw digestMismatch(`downloaded archive ${entry.url}`, received.sha256, entry.archive.sha256);
      }
      await extractMember(downloadPath, entry.archive.member, extractedPath, entry.url);
      candidate = extractedPath;
    }
    const size = (await stat(candidate)).size;
    const digest = candidate === downloadPath ? received.sha256 : await sha256File(candidate);
    if (digest !== entry.sha256) {
      throw digestMismatch(`downloaded libkrunfw ${manifest.version} from ${entry.url}`, digest, entry.sha256);
    }
    if (size !== entry.size) {
      throw new IiiError("FirmwareDownloadFailed", `downloaded libkrunfw from ${entry.url} is ${size} bytes, expected ${entry.size}`);
    }
    await chmod(candidate, 0o755);
    await rename(candidate, finalPath);
    await linkSonames(libDir, entry);
    return finalPath;
  } finally {
    await rm(downloadPath, { force: true });
    await rm(extractedPath, { force: true });
  }
}

export { digestMismatch };

async function fetchToFile(
  url: string,
  path: string,
  options: DownloadFirmwareOptions,
): Promise<{ bytes: number; sha256: string }> {
  let response: Response;
  try {
    response = await registryFetch(url, {
      signal: AbortSignal.timeout(options.timeoutMs ?? 120_000),
      headers: { "user-agent": options.userAgent ?? "iii-worker" },
      redirect: "follow",
    }, options.env);
  } catch (error) {
    throw new IiiError("FirmwareDownloadFailed", `cannot download libkrunfw from ${url}: ${describeFetchError(error)}`, { cause: error });
  }
  if (!response.ok || !response.body) {
    await response.body?.cancel().catch(() => undefined);
    throw new IiiError(
      "FirmwareDownloadFailed",
      `cannot download libkrunfw from ${url}: HTTP ${response.status} ${response.statusText}`.trimEnd() +
        "; set III_LIBKRUNFW_PATH to a local libkrunfw",
    );
  }
  const lengthHeader = response.headers.get("content-length");
  const totalBytes = lengthHeader === null ? undefined : Number(lengthHeader);
  const hash = createHash("sha256");
  let receivedBytes = 0;
  const meter = new Transform({
    transform(chunk: Buffer, _encoding, callback) {
      hash.update(chunk);
      receivedBytes += chunk.byteLength;
      options.onProgress?.({ receivedBytes, totalBytes });
      callback(null, chunk);
    },
  });
  try {
    await pipeline(Readable.fromWeb(response.body as import("node:stream/web").ReadableStream), meter, createWriteStream(path, { flags: "wx", mode: 0o600 }));
  } catch (error) {
    throw new IiiError(
      "FirmwareDownloadFailed",
      `download of ${url} failed after ${receivedBytes}${totalBytes === undefined ? "" : ` of ${totalBytes}`} bytes: ${describeFetchError(error)}`,
      { cause: error },
    );
  }
  if (totalBytes !== undefined && receivedBytes !== totalBytes) {
    throw new IiiError("FirmwareDownloadFailed", `download of ${url} is truncated: ${receivedBytes} of ${totalBytes} bytes`);
  }
  return { bytes: receivedBytes, sha256: hash.digest("hex") };
}

function describeFetchError(error: unknown): string {
  const err = error as Error & { cause?: Error & { code?: string } };
  if (err?.name === "TimeoutError") return "timed out";
  const cause = err?.cause;
  return cause ? `${err.message} (${cause.code ?? cause.message})` : String(err?.message ?? error);
}

async function extractMember(archivePath: string, member: string, outPath: string, url: string): Promise<void> {
  const extract = tar.extract();
  let found = false;
  const consume = (async () => {
    for await (const entry of extract) {
      if (!found && entry.header.name === member && (entry.header.type === "file" || entry.header.type === "contiguous-file")) {
        found = true;
        await pipeline(entry, createWriteStream(outPath, { flags: "wx", mode: 0o600 }));
      } else {
        entry.resume();
      }
    }
  })();
  try {
    await Promise.all([pipeline(createReadStream(archivePath), createGunzip(), extract), consume]);
  } catch (error) {
    throw new IiiError("FirmwareDownloadFailed", `cannot unpack ${url}: ${(error as Error).message}`, { cause: error });
  }
  if (!found) throw new IiiError("FirmwareDownloadFailed", `'${member}' not found in the archive downloaded from ${url}`);
}

/** `libkrunfw.so.5 → libkrunfw.so.5.6.1` and `libkrunfw.so → libkrunfw.so.5`, replacing what was there. */
export async function linkSonames(libDir: string, entry: FirmwarePlatformEntry): Promise<void> {
  const links: Array<[string, string]> = [];
  if (entry.soname !== entry.file) links.push([entry.soname, entry.file]);
  const devName = entry.soname.replace(/\.so\.\d+$/, ".so").replace(/\.\d+\.dylib$/, ".dylib");
  if (devName !== entry.soname) links.push([devName, entry.soname]);
  for (const [name, target] of links) {
    const path = join(libDir, name);
    await unlink(path).catch(() => undefined);
    await symlink(target, path).catch((error: NodeJS.ErrnoException) => {
      if (error.code !== "EEXIST") throw error;
    });
  }
}
