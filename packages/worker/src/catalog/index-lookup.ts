import { readFile } from "node:fs/promises";
import { fileURLToPath } from "node:url";
import { IiiError } from "../errors.js";
import { registryFetch } from "../images/registry/proxy.js";

export const DEFAULT_REGISTRY_INDEX_URL = "https://raw.githubusercontent.com/iii-hq/workers/main/registry/index.json";
const FETCH_TIMEOUT_MS = 15_000;

interface RegistryIndexEntry {
  description?: string;
  image: string;
  latest: string;
}

interface RegistryIndex {
  version: number;
  workers: Record<string, RegistryIndexEntry>;
}

export interface ResolvedShortName {
  name: string;
  image: string;
  description?: string;
}

function decodeIndex(raw: unknown, source: string): RegistryIndex {
  const fail = (why: string): never => {
    throw new IiiError("RegistryLookupFailed", `registry index at ${source} is malformed: ${why}`);
  };
  if (raw === null || typeof raw !== "object") fail("expected a JSON object");
  const record = raw as Record<string, unknown>;
  if (typeof record.version !== "number") fail('"version" must be a number');
  if (record.workers === null || typeof record.workers !== "object") fail('"workers" must be an object');
  for (const [name, entry] of Object.entries(record.workers as Record<string, unknown>)) {
    const e = entry as Record<string, unknown> | null;
    if (!e || typeof e.image !== "string" || typeof e.latest !== "string") {
      fail(`workers.${name} needs string "image" and "latest"`);
    }
  }
  return record as unknown as RegistryIndex;
}

async function fetchIndexText(url: string, env: NodeJS.ProcessEnv): Promise<string> {
  if (url.startsWith("file://")) {
    const path = fileURLToPath(url);
    try {
      return await readFile(path, "utf8");
    } catch (error) {
      throw new IiiError("RegistryLookupFailed", `failed to read local registry at ${path}: ${(error as Error).message}`, {
        cause: error,
      });
    }
  }
  let response: Response;
  try {
    response = await registryFetch(url, { signal: AbortSignal.timeout(FETCH_TIMEOUT_MS) }, env);
  } catch (error) {
    throw new IiiError("RegistryLookupFailed", `failed to fetch registry ${url}: ${(error as Error).message}`, { cause: error });
  }
  if (!response.ok) throw new IiiError("RegistryLookupFailed", `registry ${url} returned HTTP ${response.status}`);
  return response.text();
}

/**
 * Resolves a short name (`image-resize`, or `image-resize@1.2.0` for a pinned version) through the registry
 * index JSON at `III_REGISTRY_URL` (http(s) or file://).
 */
export async function resolveShortName(input: string, env: NodeJS.ProcessEnv = process.env): Promise<ResolvedShortName> {
  const url = env.III_REGISTRY_URL || DEFAULT_REGISTRY_INDEX_URL;
  const at = input.indexOf("@");
  const name = at >= 0 ? input.slice(0, at) : input;
  const version = at >= 0 ? input.slice(at + 1) : undefined;
  if (version !== undefined && !/^[\w][\w.-]{0,127}$/.test(version)) {
    throw new IiiError("InvalidReference", `invalid version "${version}" in "${input}"`);
  }
  const text = await fetchIndexText(url, env);
  let raw: unknown;
  try {
    raw = JSON.parse(text);
  } catch (error) {
    throw new IiiError("RegistryLookupFailed", `failed to parse registry ${url}: ${(error as Error).message}`, { cause: error });
  }
  const index = decodeIndex(raw, url);
  const entry = Object.hasOwn(index.workers, name) ? index.workers[name] : undefined;
  if (!entry) {
    throw new IiiError("RegistryLookupFailed", `worker "${name}" not found in registry ${url}`);
  }
  const resolved: ResolvedShortName = { name, image: `${entry.image}:${version ?? entry.latest}` };
  if (entry.description !== undefined) resolved.description = entry.description;
  return resolved;
}
