/**
 * Shared set-up for the VM tests: finds qemu, virtiofsd and the firmware (or says why the tests skip), builds
 * the cached busybox rootfs, and makes per-test rootfs copies with their own /init.krun.
 */
import { execFileSync } from "node:child_process";
import { chmodSync, cpSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { findQemu, findVirtiofsd } from "../../src/host/binaries.js";
import { resolveKernel } from "../../src/firmware/index.js";
import type { QemuVmm } from "../../src/vmm/index.js";

export interface VmTestEnv {
  kernelPath: string;
  busyboxRootfs: string;
}

const BUILD_SCRIPT = fileURLToPath(new URL("../fixtures/build-busybox-rootfs.sh", import.meta.url));

/** Resolves what a VM test needs, or returns the reason it must skip (printed by the caller). */
export async function vmTestEnv(): Promise<VmTestEnv | { skip: string }> {
  if (process.platform !== "linux" || process.arch !== "x64") return { skip: `VM tests need linux-x64, not ${process.platform}-${process.arch}` };
  if (!findQemu()) return { skip: "qemu-system-x86_64 not found (apt install qemu-system-x86)" };
  if (!findVirtiofsd()) return { skip: "virtiofsd not found (apt install qemu-system-common)" };
  let kernelPath: string;
  try {
    // Downloads are off: a test run must not fetch 40 MB behind the user's back.
    // The kernel ELF goes to the tests' own cache, not the user's ~/.iii (atomic rename: concurrent runs are fine).
    const { kernel } = await resolveKernel({ download: false, cacheDir: join(testCacheDir(), "kernel") });
    kernelPath = kernel.elfPath;
  } catch (error) {
    return { skip: `libkrunfw firmware not available: ${(error as Error).message}` };
  }
  const busyboxRootfs = execFileSync("sh", [BUILD_SCRIPT, testCacheDir()], { encoding: "utf8" }).trim();
  return { kernelPath, busyboxRootfs };
}

export function testCacheDir(): string {
  return process.env.III_TEST_CACHE ?? join(tmpdir(), "iii-test-cache");
}

/** A short unique temp dir (unix socket paths must stay under 108 bytes). */
export function shortTempDir(prefix: string): string {
  return mkdtempSync(join(tmpdir().length < 20 ? tmpdir() : "/tmp", `iii-vm-${prefix}-`));
}

/** Copies the busybox rootfs into `dir/root` and writes `/init.krun` as a busybox shell script. */
export function rootfsWithInit(busyboxRootfs: string, dir: string, script: string): string {
  const root = join(dir, "root");
  cpSync(busyboxRootfs, root, { recursive: true, verbatimSymlinks: true });
  writeFileSync(join(root, "init.krun"), `#!/bin/busybox sh\n${script}\n`);
  chmodSync(join(root, "init.krun"), 0o755);
  return root;
}

/** Mount what a busybox init needs; then `...` ; then reboot (QEMU exits: reboot=t + -no-reboot). */
export const INIT_PRELUDE = "/bin/busybox mount -t proc proc /proc\n/bin/busybox mount -t sysfs sysfs /sys\n/bin/busybox mount -t devtmpfs dev /dev 2>/dev/null";
export const INIT_REBOOT = "/bin/busybox sync\n/bin/busybox reboot -f";

/** Cleans up VMs and dirs even when a test failed. */
export class VmTestResources {
  readonly vms: QemuVmm[] = [];
  readonly dirs: string[] = [];

  track<T extends QemuVmm>(vm: T): T {
    this.vms.push(vm);
    return vm;
  }

  dir(prefix: string): string {
    const dir = shortTempDir(prefix);
    this.dirs.push(dir);
    return dir;
  }

  async release(): Promise<void> {
    await Promise.allSettled(this.vms.map((vm) => vm.cleanup()));
    for (const dir of this.dirs) rmSync(dir, { recursive: true, force: true });
  }
}
