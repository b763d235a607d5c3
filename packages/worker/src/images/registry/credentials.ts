import { mkdirs } from "../../host/mkdirs.js";
import { createRequire } from "node:module";
import { mkdir, readFile } from "node:fs/promises";
import { homedir } from "node:os";
import { dirname, join } from "node:path";
import { errnoCode, IiiError } from "../../errors.js";
import { writeFileAtomic } from "../../util/atomic-write.js";
import { checkHomeSafe } from "../../state/home-safety.js";

export interface RegistryCredentials {
  username: string;
  password: string;
  /** Where they came from, for error messages ("iii worker login", "/root/.docker/config.json"). */
  source: string;
}

interface DockerConfigFile {
  auths?: Record<string, { auth?: string; username?: string; password?: string; identitytoken?: string }>;
  credHelpers?: Record<string, string>;
  credsStore?: string;
}

const DOCKER_HUB_KEYS = ["https://index.docker.io/v1/", "index.docker.io", "docker.io", "registry-1.docker.io"];

/** The keys a registry may be filed under in a docker config (`https://host/`, `host`, Docker Hub's v1 URL). */
export function registryKeys(registry: string): string[] {
  if (registry === "docker.io" || registry === "registry-1.docker.io" || registry === "index.docker.io") return DOCKER_HUB_KEYS;
  return [registry, `https://${registry}`, `http://${registry}`, `https://${registry}/`, `https://${registry}/v1/`, `https://${registry}/v2/`];
}

export function iiiAuthFile(home: string): string {
  return join(home, "auth.json");
}

export function dockerConfigFile(env: NodeJS.ProcessEnv = process.env): string {
  return join(env.DOCKER_CONFIG || join(homedir(), ".docker"), "config.json");
}

async function readConfig(path: string): Promise<DockerConfigFile | undefined> {
  let text: string;
  try {
    text = await readFile(path, "utf8");
  } catch (error) {
    if (errnoCode(error) === "ENOENT") return undefined;
    throw new IiiError("ImagePullFailed", `cannot read registry credentials ${path}: ${(error as Error).message}`, { cause: error });
  }
  try {
    return JSON.parse(text) as DockerConfigFile;
  } catch (error) {
    throw new IiiError("ImagePullFailed", `registry credentials file ${path} is not valid JSON`, { cause: error });
  }
}

function decodeAuth(
  entry: NonNullable<DockerConfigFile["auths"]>[string],
  source: string,
): RegistryCredentials | undefined {
  if (entry.username && entry.password) return { username: entry.username, password: entry.password, source };
  if (!entry.auth) return undefined;
  const decoded = Buffer.from(entry.auth, "base64").toString("utf8");
  const colon = decoded.indexOf(":");
  if (colon < 0) return undefined;
  return { username: decoded.slice(0, colon), password: decoded.slice(colon + 1), source };
}

function runHelper(helper: string, registry: string): Promise<RegistryCredentials | undefined> {
  return new Promise((resolve) => {
    // Loaded only when a credential helper is configured (node:child_process costs a pull ~0.4 MB of RSS).
    const { execFile } = createRequire(import.meta.url)("node:child_process") as typeof import("node:child_process");
    const child = execFile(`docker-credential-${helper}`, ["get"], { timeout: 10_000 }, (error, stdout) => {
      if (error) return resolve(undefined);
      try {
        const parsed = JSON.parse(stdout) as { Username?: string; Secret?: string };
        if (parsed.Username && parsed.Secret) {
          return resolve({ username: parsed.Username, password: parsed.Secret, source: `docker-credential-${helper}` });
        }
      } catch {
        // a helper that prints no JSON has nothing for this registry
      }
      resolve(undefined);
    });
    child.stdin?.end(registry);
  });
}

/** Credentials for a registry: `iii worker login` first, then the docker config (helpers, then `auths`). */
export async function lookupCredentials(
  registry: string,
  home: string,
  env: NodeJS.ProcessEnv = process.env,
): Promise<RegistryCredentials | undefined> {
  const keys = registryKeys(registry);
  const iiiPath = iiiAuthFile(home);
  const iii = await readConfig(iiiPath);
  for (const key of keys) {
    const entry = iii?.auths?.[key];
    const credentials = entry && decodeAuth(entry, "iii worker login");
    if (credentials) return credentials;
  }
  const dockerPath = dockerConfigFile(env);
  const docker = await readConfig(dockerPath);
  if (!docker) return undefined;
  for (const key of keys) {
    const helper = docker.credHelpers?.[key];
    if (helper) return runHelper(helper, key);
  }
  for (const key of keys) {
    const entry = docker.auths?.[key];
    const credentials = entry && decodeAuth(entry, dockerPath);
    if (credentials) return credentials;
  }
  if (docker.credsStore) return runHelper(docker.credsStore, keys[0]!);
  return undefined;
}

/** Stores credentials for `iii worker login` under III_HOME/auth.json (docker config format, mode 0600). */
export async function storeCredentials(registry: string, username: string, password: string, home: string): Promise<string> {
  const path = iiiAuthFile(home);
  const config = (await readConfig(path)) ?? {};
  config.auths ??= {};
  const key = registry === "docker.io" ? DOCKER_HUB_KEYS[0]! : registry;
  config.auths[key] = { auth: Buffer.from(`${username}:${password}`).toString("base64") };
  await mkdirs(dirname(path), 0o700);
  // write-file-atomic follows a link at the name and gives the new file the old one's owner: only in a home of ours.
  checkHomeSafe(home);
  await writeFileAtomic(path, `${JSON.stringify(config, null, 2)}\n`, { mode: 0o600 });
  return path;
}

export async function removeCredentials(registry: string, home: string): Promise<boolean> {
  const path = iiiAuthFile(home);
  const config = await readConfig(path);
  const key = registry === "docker.io" ? DOCKER_HUB_KEYS[0]! : registry;
  if (!config?.auths?.[key]) return false;
  checkHomeSafe(home);
  delete config.auths[key];
  await writeFileAtomic(path, `${JSON.stringify(config, null, 2)}\n`, { mode: 0o600 });
  return true;
}
