import { readFileSync } from "node:fs";

/**
 * The host TSC frequency in kHz, for the guest's `tsc_early_khz=` under TCG: TCG's emulated RDTSC runs at
 * the host TSC rate, and without the hint about 1 boot in 10 hangs in the kernel's clock calibration
 * (DESIGN §3). `/sys/devices/system/cpu/cpu0/tsc_freq_khz` where the kernel exposes it, else the first
 * "cpu MHz" of /proc/cpuinfo (the TSC rate on constant_tsc hosts). Undefined when neither is readable.
 */
export function hostTscKhz(): number | undefined {
  try {
    const khz = Number(readFileSync("/sys/devices/system/cpu/cpu0/tsc_freq_khz", "utf8").trim());
    if (Number.isFinite(khz) && khz > 0) return Math.round(khz);
  } catch {
    // not exposed by this kernel
  }
  try {
    const mhz = /^cpu MHz\s*:\s*([\d.]+)/m.exec(readFileSync("/proc/cpuinfo", "utf8"))?.[1];
    if (mhz) return Math.round(Number(mhz) * 1000);
  } catch {
    // not Linux
  }
  return undefined;
}
