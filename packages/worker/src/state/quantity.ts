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
export function parseCpus(text: string): number {
  const cpus = parseQuantity(text, "cpus");
  if (!(cpus > 0) || cpus > 1024) {
    throw new IiiError("InvalidQuantity", `invalid cpus "${text}": must be more than 0 and at most 1024`);
  }
  return cpus;
}

/** Memory in bytes from a quantity: `"512Mi"` → 536870912. Must be at least 16 MiB, a whole number of bytes. */
export function parseMemoryBytes(text: string): number {
  const bytes = parseQuantity(text, "memory");
  if (!Number.isFinite(bytes) || bytes < 16 * 2 ** 20) {
    throw new IiiError("InvalidQuantity", `invalid memory "${text}": must be at least 16Mi`);
  }
  if (!Number.isInteger(bytes)) {
    throw new IiiError("InvalidQuantity", `invalid memory "${text}": must be a whole number of bytes`);
  }
  return bytes;
}

/** Whole vCPUs for a VM: fractional CPUs round up, at least 1. */
export function vcpusFor(cpus: number): number {
  return Math.max(1, Math.ceil(cpus));
}
