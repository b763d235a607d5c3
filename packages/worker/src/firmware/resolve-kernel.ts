// What a VM start needs from the firmware, in a module of its own: the barrel (index.ts) also re-exports the
// download (tar-stream, streamx, zlib), which `start` would otherwise load (~15 ms) only to find the kernel cached.
import { ensureKernel, type EnsureKernelOptions, type KernelImage } from "./kernel.js";
import { resolveFirmware, type FirmwareResolverOptions, type ResolvedFirmware } from "./resolver.js";

/** Resolve (downloading if needed) and return the bootable PVH kernel: what a VM start needs. */
export async function resolveKernel(
  options: FirmwareResolverOptions & Pick<EnsureKernelOptions, "cacheDir"> = {},
): Promise<{ firmware: ResolvedFirmware; kernel: KernelImage }> {
  const firmware = await resolveFirmware(options);
  const kernel = await ensureKernel(firmware, { env: options.env, cacheDir: options.cacheDir });
  return { firmware, kernel };
}
