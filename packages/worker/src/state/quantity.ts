import { IiiError } from "../errors.js";

const BINARY_SUFFIXES: Record<string, number> = {
  Ki: 2 ** 10,
  Mi: 2 ** 20,
  Gi: 2 ** 30,
  Ti: 2 ** 40,
  Pi: 2 ** 50,
  Ei: 2 ** 60,
};
const DECIMAL_SUFFIXES: Record<string, number> = {
  m: 1e-3,
  "": 1,
  k: 1e3,
  M: 1e6,
  G: 1e9,
  T: 1e12,
  P: 1e15,
  E: 1e18,
};

// Kubernetes resource.Quantity: a signed decimal, then a binary SI, decimal SI or exponent suffix.
const QUANTITY = /^([+]?(?:\d+(?:\.\d*)?|\.\d+))(Ki|Mi|Gi|Ti|Pi|Ei|[mkMGTPE]|[eE][+-]?\d+)?$/;

/** Parses a Kubernetes quantity (`"500m"`, `"2"`, `"512Mi"`, `"1G"`, `"1e3"`) to a number. */
export function parseQuantity(text: string, field: string): number {
  const match = QUANTITY.exec(text.trim());
  if (!match) {
    throw new IiiError(
      "InvalidQuantity",
      `invalid ${field} "${text}": expected a Kubernetes quantity such as 500m, 2, 512Mi, 1Gi or 1G`,
    );
  }
  const value = Number(match[1]);
  const suffix = match[2] ?? "";
  let multiplier: number;
  if (suffix in BINARY_SUFFIXES) multiplier = BINARY_SUFFIXES[suffix]!;
  else if (suffix in DECIMAL_SUFFIXES) multiplier = DECIMAL_SUFFIXES[suffix]!;
  else multiplier = 10 ** Number(suffix.slice(1));
  return value * multiplier;
}

/** CPUs from a quantity: `"500m"` → 0.5, `"2"` → 2. Must be > 0. */
/** The most vCPUs a worker's VM boots with (QEMU's microvm); `--cpus` applies to VM workers only. */
export const MAX_VCPUS = 255;

export function parseCpus(text: string): number {
  const cpus = parseQuantity(text, "cpus");
  if (!(cpus > 0)) throw new IiiError("InvalidQuantity", `invalid cpus "${text}": must be more than 0`);
  // Checked here, not only at `add`: a hand-edited iii.workers.yaml otherwise failed every start instead.
  if (Math.ceil(cpus) > MAX_VCPUS) throw new IiiError("InvalidQuantity", `invalid cpus "${text}": a worker's VM has at most ${MAX_VCPUS} vCPUs`);
  return cpus;
}

/** Memory in bytes from a quantity: `"512Mi"` → 536870912. Must be at least 16 MiB, a whole number of bytes. */
export function parseMemoryBytes(text: string): number {
  const bytes = parseQuantity(text, "memory");
  // `1e400` is Infinity: too much, not too little. 4Pi stays an exact integer.
  if (!Number.isFinite(bytes) || bytes > 2 ** 52) throw new IiiError("InvalidQuantity", `invalid memory "${text}": must be at most 4Pi`);
  if (bytes < 16 * 2 ** 20) {
    throw new IiiError("InvalidQuantity", `invalid memory "${text}": must be at least 16Mi`);
  }
  if (!Number.isInteger(bytes)) {
    throw new IiiError("InvalidQuantity", `invalid memory "${text}": must be a whole number of bytes`);
  }
  return bytes;
}

/**
 * The least `--disk`: 64Mi. It catches a forgotten unit (`--disk 10`, `--disk 512`: bytes, a worker whose first
 * real write fails) and leaves room for logs, caches and small edits. Smaller stops being a bound and becomes a
 * breakage: a guest that changes one file of its image copies the whole file into the writable layer, and a
 * language runtime's binary alone is tens of MiB (node's ~120 MB).
 */
export const DISK_MIN_BYTES = 64 * 2 ** 20;
/** The most `--disk`: 4Pi, far above any host disk and still an exact number of bytes in a double. */
export const DISK_MAX_BYTES = 2 ** 52;

/**
 * The most bytes a worker's writable root layer may hold, from a quantity: `"10Gi"` → 10737418240. A bare number
 * is bytes, as in Kubernetes' `ephemeral-storage`, so `10` is refused by the minimum rather than read as 10 GiB.
 */
export function parseDiskBytes(text: string): number {
  const bytes = parseQuantity(text, "disk");
  if (!Number.isFinite(bytes) || bytes > DISK_MAX_BYTES) {
    throw new IiiError("InvalidQuantity", `invalid disk "${text}": must be at most 4Pi`);
  }
  if (!Number.isInteger(bytes)) {
    throw new IiiError("InvalidQuantity", `invalid disk "${text}": must be a whole number of bytes`);
  }
  if (bytes < DISK_MIN_BYTES) {
    const bare = /^\d+$/.test(text.trim()) ? ` (a bare number is bytes: did you mean ${text.trim()}Gi?)` : "";
    throw new IiiError("InvalidQuantity", `invalid disk "${text}": must be at least 64Mi${bare}`);
  }
  return bytes;
}

/** Whole vCPUs for a VM: fractional CPUs round up, at least 1. */
export function vcpusFor(cpus: number): number {
  return Math.max(1, Math.ceil(cpus));
}
