import { parse as parseYaml } from "yaml";
import { IiiError } from "../errors.js";
import { parseCpus, parseDiskBytes, parseMemoryBytes } from "../state/quantity.js";
import { DevProjectError } from "./errors.js";

export const MANIFEST_FILE = "iii.worker.yaml";

export type DevLanguage = "node" | "python";
export type NodePackageManager = "npm" | "pnpm" | "yarn" | "bun";
export type DevPackageManager = NodePackageManager | "pip";

export interface DevResources {
  /** From a Kubernetes quantity: `"500m"` → 0.5, `2` → 2. */
  cpus?: number;
  /** From a Kubernetes quantity: `"512Mi"` → 536870912. */
  memoryBytes?: number;
  /** The writable root layer's bound, from a Kubernetes quantity: `"20Gi"` → 21474836480. */
  diskBytes?: number;
}

/** What `iii.worker.yaml` says. Absent fields are `undefined`; a script set to `""` means "none". */
export interface DevManifest {
  name?: string;
  runtime: { language?: DevLanguage; packageManager?: DevPackageManager; entry?: string };
  scripts: { setup?: string; install?: string; start?: string };
  env: Record<string, string>;
  resources: DevResources;
}

const LANGUAGE_ALIASES: Record<string, DevLanguage> = {
  node: "node",
  nodejs: "node",
  javascript: "node",
  js: "node",
  typescript: "node",
  ts: "node",
  python: "python",
  python3: "python",
  py: "python",
};
const PACKAGE_MANAGERS = new Set<string>(["npm", "pnpm", "yarn", "bun", "pip"]);
const ENV_KEY = /^[A-Za-z_][A-Za-z0-9_]*$/;

function isRecord(value: unknown): value is Record<string, unknown> {
  return typeof value === "object" && value !== null && !Array.isArray(value);
}

/** Parses and validates `iii.worker.yaml`. Every problem names the field and what was expected. */
export function parseDevManifest(text: string, source = MANIFEST_FILE): DevManifest {
  const invalid = (message: string, cause?: unknown): DevProjectError =>
    new DevProjectError("InvalidManifest", `${source}: ${message}`, cause === undefined ? {} : { cause });
  let document: unknown;
  try {
    document = parseYaml(text);
  } catch (error) {
    throw invalid(`not valid YAML: ${(error as Error).message}`, error);
  }
  document ??= {};
  if (!isRecord(document)) throw invalid("must be a mapping (name, runtime, scripts, env, resources)");

  const optionalString = (value: unknown, field: string): string | undefined => {
    if (value === undefined || value === null) return undefined;
    if (typeof value !== "string") throw invalid(`${field} must be a string, got ${JSON.stringify(value)}`);
    return value.trim();
  };
  const section = (key: string): Record<string, unknown> => {
    const value = document[key];
    if (value === undefined || value === null) return {};
    if (!isRecord(value)) throw invalid(`${key} must be a mapping`);
    return value;
  };

  const manifest: DevManifest = { runtime: {}, scripts: {}, env: {}, resources: {} };
  const name = optionalString(document.name, "name");
  if (name) manifest.name = name;

  const runtime = section("runtime");
  const language = optionalString(runtime.language, "runtime.language");
  if (language) {
    const canonical = LANGUAGE_ALIASES[language.toLowerCase()];
    if (!canonical) {
      throw new DevProjectError(
        "UnsupportedLanguage",
        `${source}: runtime.language "${language}" is not supported by iii worker dev (use node or python)`,
      );
    }
    manifest.runtime.language = canonical;
  }
  const packageManager = optionalString(runtime.packageManager ?? runtime.package_manager, "runtime.packageManager");
  if (packageManager) {
    if (!PACKAGE_MANAGERS.has(packageManager)) {
      throw invalid(`runtime.packageManager "${packageManager}" is not one of npm, pnpm, yarn, bun, pip`);
    }
    manifest.runtime.packageManager = packageManager as DevPackageManager;
  }
  const entry = optionalString(runtime.entry, "runtime.entry");
  if (entry) manifest.runtime.entry = entry;

  const scripts = section("scripts");
  for (const key of ["setup", "install", "start"] as const) {
    const value = optionalString(scripts[key], `scripts.${key}`);
    if (value !== undefined) manifest.scripts[key] = value;
  }

  const env = section("env");
  for (const [key, value] of Object.entries(env)) {
    if (!ENV_KEY.test(key)) throw invalid(`env key "${key}" is not a valid variable name`);
    if (value === null || value === undefined) continue;
    if (typeof value !== "string" && typeof value !== "number" && typeof value !== "boolean") {
      throw invalid(`env.${key} must be a string, number or boolean`);
    }
    manifest.env[key] = String(value);
  }

  const resources = section("resources");
  const quantity = <T>(parse: (text: string) => T, value: string): T => {
    try {
      return parse(value);
    } catch (error) {
      if (error instanceof IiiError) throw new IiiError(error.code, `${source}: ${error.message}`, { cause: error });
      throw error;
    }
  };
  if (resources.cpus !== undefined && resources.cpus !== null) {
    if (typeof resources.cpus !== "string" && typeof resources.cpus !== "number") {
      throw invalid("resources.cpus must be a Kubernetes quantity such as 1, 2 or 500m");
    }
    manifest.resources.cpus = quantity(parseCpus, String(resources.cpus));
  }
  if (resources.memory !== undefined && resources.memory !== null) {
    if (typeof resources.memory === "number") {
      // iii 0.x read a bare number as MiB and silently ignored anything else; a quantity with a unit is unambiguous.
      throw new IiiError(
        "InvalidQuantity",
        `${source}: resources.memory ${resources.memory} has no unit; write a Kubernetes quantity such as "${resources.memory}Mi"`,
      );
    }
    if (typeof resources.memory !== "string") {
      throw invalid("resources.memory must be a Kubernetes quantity such as 512Mi or 2Gi");
    }
    manifest.resources.memoryBytes = quantity(parseMemoryBytes, resources.memory);
  }
  if (resources.disk !== undefined && resources.disk !== null) {
    if (typeof resources.disk === "number") {
      throw new IiiError(
        "InvalidQuantity",
        `${source}: resources.disk ${resources.disk} has no unit; write a Kubernetes quantity such as "${resources.disk}Gi"`,
      );
    }
    if (typeof resources.disk !== "string") throw invalid("resources.disk must be a Kubernetes quantity such as 512Mi or 20Gi");
    manifest.resources.diskBytes = quantity(parseDiskBytes, resources.disk);
  }
  return manifest;
}
