import { mkdirsSync } from "../host/mkdirs.js";
import { closeSync, openSync, readSync, statSync } from "node:fs";
import { readFile, rm } from "node:fs/promises";
import { join } from "node:path";
import { randomBytes } from "node:crypto";
import { iiiHome } from "../paths.js";
import { writeFileAtomic } from "../util/atomic-write.js";
import { IiiError } from "../errors.js";
import { extractKernelImage } from "./extract.js";
import { KERNEL_FILE_OFFSET, buildPvhElfHeader, parsePvhElfHeader, scanImageForPhys32Entry } from "./pvh-elf.js";

export interface KernelImage {
  /** The PVH ELF that `qemu -kernel` boots. */
  elfPath: string;
  /** sha256 of the libkrunfw library the kernel came from (the cache key). */
  firmwareSha256: string;
  loadAddr: bigint;
  pvhEntry: bigint;
  sizeBytes: number;
  /** True when the ELF was already in the cache. */
  cached: boolean;
}

export function kernelCacheDir(env: NodeJS.ProcessEnv = process.env): string {
  return join(iiiHome(env), "cache", "kernel");
}

export interface EnsureKernelOptions {
  env?: NodeJS.ProcessEnv;
  /** Overrides `<III_HOME>/cache/kernel`. */
  cacheDir?: string;
}

/**
 * The PVH ELF for a verified libkrunfw, from `~/.iii/cache/kernel/<sha256>.elf` or extracted and wrapped on
 * first use. Written to a temp file and renamed, so concurrent starts never see half a kernel.
 */
export async function ensureKernel(
  firmware: { path: string; sha256: string },
  options: EnsureKernelOptions = {},
): Promise<KernelImage> {
  const dir = options.cacheDir ?? kernelCacheDir(options.env);
  const elfPath = join(dir, `${firmware.sha256}.elf`);
  const existing = readCachedKernel(elfPath);
  if (existing) return { ...existing, elfPath, firmwareSha256: firmware.sha256, cached: true };

  try {
    // III_HOME itself, when this makes it, is private like the image cache's (images/cache/store.ts).
    if (!options.cacheDir) mkdirsSync(iiiHome(options.env), 0o700);
    mkdirsSync(dir);
  } catch (error) {
    throw new IiiError("HomeUnwritable", `cannot create the kernel cache ${dir}: ${(error as Error).message}`, { cause: error });
  }
  const tag = `${process.pid}.${randomBytes(4).toString("hex")}`;
  const rawPath = join(dir, `.${firmware.sha256}.${tag}.raw`);
  try {
    const info = await extractKernelImage(firmware.path, rawPath);
    const image = await readFile(rawPath);
    if (image.byteLength !== info.sizeBytes) {
      throw new IiiError("FirmwareCorrupt", `${firmware.path}: kernel image is ${image.byteLength} bytes, krunfw_get_kernel said ${info.sizeBytes}`);
    }
    // The libkrunfw image carries the kernel's own .notes; prefer its PVH entry. libkrunfw 5.x places
    // pvh_start_xen at the load address (measured: note value 0x1000000 = load_addr), the fallback.
    const pvhEntry = scanImageForPhys32Entry(image) ?? info.loadAddr;
    const header = buildPvhElfHeader({ loadAddr: info.loadAddr, pvhEntry, kernelSize: image.byteLength });
    await writeFileAtomic(elfPath, Buffer.concat([header, image]), { mode: 0o644 });
    return { elfPath, firmwareSha256: firmware.sha256, loadAddr: info.loadAddr, pvhEntry, sizeBytes: image.byteLength, cached: false };
  } finally {
    await rm(rawPath, { force: true });
  }
}

/** A cached ELF is trusted when its header parses and its size matches the PT_LOAD it describes. */
function readCachedKernel(elfPath: string): Omit<KernelImage, "elfPath" | "firmwareSha256" | "cached"> | undefined {
  let fd: number | undefined;
  try {
    const size = statSync(elfPath).size;
    fd = openSync(elfPath, "r");
    const header = new Uint8Array(KERNEL_FILE_OFFSET);
    if (readSync(fd, header, 0, header.byteLength, 0) !== header.byteLength) return undefined;
    const parsed = parsePvhElfHeader(header);
    if (!parsed.load || parsed.phys32Entry === undefined) return undefined;
    if (BigInt(size) !== parsed.load.offset + parsed.load.fileSize) return undefined;
    return { loadAddr: parsed.load.paddr, pvhEntry: parsed.phys32Entry, sizeBytes: Number(parsed.load.fileSize) };
  } catch {
    return undefined;
  } finally {
    if (fd !== undefined) closeSync(fd);
  }
}
