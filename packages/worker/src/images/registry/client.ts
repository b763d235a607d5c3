import { mkdirs } from "../../host/mkdirs.js";
import { httpGet, HttpError, isLocalHostname, type HttpResponse } from "./http.js";
import { createReadStream, writeSync } from "node:fs";
import { mkdir, open, readdir, rename, rm, stat, type FileHandle } from "node:fs/promises";
import type { Hash } from "node:crypto";
import { join } from "node:path";
import { setTimeout as delay } from "node:timers/promises";
import { IiiError } from "../../errors.js";
import { processStartTime } from "../../host/process-identity.js";
import { newSha256, sha256Digest } from "../digest.js";
import { MANIFEST_ACCEPT, MAX_JSON_BYTES, type Descriptor } from "../oci/manifest.js";
import { parseAuthChallenges, type AuthChallenge } from "./challenge.js";
import type { RegistryCredentials } from "./credentials.js";

export interface RegistryClientOptions {
  /** host[:port] entries that may be reached over plain HTTP. */
  insecureRegistries?: string[];
  credentials?: () => Promise<RegistryCredentials | undefined>;
  signal?: AbortSignal;
  /** Attempts for requests failing with a network error, a timeout, 429 or 5xx. */
  attempts?: number;
  /** First backoff delay; doubles per attempt (with jitter). */
  backoffMs?: number;
  /** Time allowed without a byte arriving. */
  idleTimeoutMs?: number;
  /** Where HTTPS_PROXY/HTTP_PROXY/NO_PROXY are read (default process.env). */
  env?: NodeJS.ProcessEnv;
}

export interface FetchedManifest {
  bytes: Buffer;
  mediaType: string | undefined;
  digest: string;
}

const USER_AGENT = "iii-worker/0.1 (+https://github.com/iii-hq/iii)";

/** Docker Hub's API lives on another host than its name. */
export function registryApiHost(registry: string): string {
  return registry === "docker.io" || registry === "index.docker.io" ? "registry-1.docker.io" : registry;
}

function isInsecure(host: string, insecure: string[]): boolean {
  return insecure.includes(host) || insecure.includes(host.replace(/:\d+$/, ""));
}

class RetryableError extends Error {}

/**
 * An OCI distribution client for one registry: manifests and blobs of any repository on it, anonymous, basic and
 * bearer-token auth (tokens cached per scope), retries with backoff, resumable blob downloads verified while
 * streaming.
 */
export class RegistryClient {
  readonly baseUrl: string;
  private readonly insecure: string[];
  private readonly attempts: number;
  private readonly backoffMs: number;
  private readonly idleTimeoutMs: number;
  private readonly tokens = new Map<string, string>();
  /** The scheme the registry asked for, so later requests can authenticate up front. */
  private challenge: AuthChallenge | undefined;
  private credentialsPromise: Promise<RegistryCredentials | undefined> | undefined;
  /** The registry is on this machine (or its link): only then may it send us to loopback or link-local hosts. */
  private readonly local: boolean;
  /** Whether the registry's own name first resolved to a loopback or link-local address (on this machine after all). */
  private originResolvedLocal: boolean | undefined;
  private readonly origin: string;

  constructor(
    readonly registry: string,
    private readonly options: RegistryClientOptions = {},
  ) {
    this.insecure = options.insecureRegistries ?? [];
    const host = registryApiHost(registry);
    this.baseUrl = `${isInsecure(registry, this.insecure) ? "http" : "https"}://${host}`;
    this.origin = new URL(this.baseUrl).origin;
    this.local = isLocalHostname(new URL(this.baseUrl).hostname);
    this.attempts = options.attempts ?? 4;
    this.backoffMs = options.backoffMs ?? 500;
    this.idleTimeoutMs = options.idleTimeoutMs ?? 60_000;
  }

  private credentials(): Promise<RegistryCredentials | undefined> {
    this.credentialsPromise ??= this.options.credentials?.() ?? Promise.resolve(undefined);
    return this.credentialsPromise;
  }

  private fail(message: string, cause?: unknown): IiiError {
    return new IiiError("ImagePullFailed", `registry ${this.registry}: ${message}`, cause === undefined ? undefined : { cause });
  }

  /** Runs `attempt` with retries on transient failures. */
  private async withRetries<T>(what: string, attempt: () => Promise<T>): Promise<T> {
    let lastError: unknown;
    for (let i = 0; i < this.attempts; i++) {
      this.options.signal?.throwIfAborted();
      try {
        return await attempt();
      } catch (error) {
        if (!(error instanceof RetryableError) && !isNetworkError(error)) {
          if (error instanceof IiiError || this.options.signal?.aborted) throw error;
          throw this.fail(`${what} failed: ${describeFetchError(error, this.baseUrl)}`, error);
        }
        if (this.options.signal?.aborted) throw this.options.signal.reason;
        lastError = error;
        if (i + 1 < this.attempts) {
          const wait = this.backoffMs * 2 ** i * (0.75 + Math.random() * 0.5);
          await delay(wait, undefined, { signal: this.options.signal });
        }
      }
    }
    throw this.fail(`${what} failed after ${this.attempts} attempts: ${describeFetchError(lastError, this.baseUrl)}`, lastError);
  }

  private async authorization(scope: string): Promise<string | undefined> {
    const challenge = this.challenge;
    if (!challenge) return undefined;
    if (challenge.scheme === "bearer") {
      const cached = this.tokens.get(scope);
      if (cached) return `Bearer ${cached}`;
      const token = await this.fetchToken(challenge, scope);
      this.tokens.set(scope, token);
      return `Bearer ${token}`;
    }
    if (challenge.scheme === "basic") {
      const credentials = await this.credentials();
      if (!credentials) return undefined;
      return `Basic ${Buffer.from(`${credentials.username}:${credentials.password}`).toString("base64")}`;
    }
    throw this.fail(`unsupported authentication scheme "${challenge.scheme}"`);
  }

  /** The token flow of the distribution spec (GET realm?service=&scope=, with basic credentials if we have any). */
  private async fetchToken(challenge: AuthChallenge, scope: string): Promise<string> {
    const realm = challenge.params.realm;
    if (!realm) throw this.fail("bearer challenge without a realm");
    let url: URL;
    try {
      url = new URL(realm);
    } catch {
      throw this.fail(`bearer realm ${JSON.stringify(realm)} is not a URL`);
    }
    if (url.protocol !== "https:" && !(url.protocol === "http:" && (this.baseUrl.startsWith("http:") || isInsecure(url.host, this.insecure)))) {
      throw this.fail(`refusing token realm ${realm}: plain HTTP is only allowed for insecure registries`);
    }
    // The realm gets our credentials and its answer goes back to the registry: a remote registry must not aim
    // that at a service of this host (loopback) or its link (the cloud metadata address).
    const refused = this.refuseLocal(url);
    if (refused) throw this.fail(`refusing token realm ${url.origin}: ${refused}`);
    if (challenge.params.service) url.searchParams.set("service", challenge.params.service);
    url.searchParams.set("scope", scope);
    const credentials = await this.credentials();
    const headers: Record<string, string> = { "user-agent": USER_AGENT };
    if (credentials) headers.authorization = `Basic ${Buffer.from(`${credentials.username}:${credentials.password}`).toString("base64")}`;
    return this.withRetries("token request", async () => {
      const response = await this.request(url, headers);
      if (response.status === 401 || response.status === 403) {
        response.cancel();
        throw this.fail(
          `${response.status} ${response.statusText || "Unauthorized"} from token service ${url.origin}${url.pathname}: ` +
            (credentials ? `credentials for user "${credentials.username}" (from ${credentials.source}) were rejected` : "anonymous access denied; run `iii worker login " + this.registry + "`"),
        );
      }
      if (response.status >= 500 || response.status === 429) {
        response.cancel();
        throw new RetryableError(`token service answered ${response.status}`);
      }
      if (!response.ok) {
        response.cancel();
        throw this.fail(`token service ${url.origin} answered ${response.status}`);
      }
      const body = (await response.json(MAX_JSON_BYTES)) as { token?: string; access_token?: string };
      const token = body.token ?? body.access_token;
      if (typeof token !== "string" || token === "") throw this.fail(`token service ${url.origin} returned no token`);
      return token;
    });
  }

  /**
   * One GET (redirects followed) with a deadline for the response head and an idle deadline for the body: a body
   * may take as long as it keeps moving, so a slow multi-GiB blob is not cut every minute.
   */
  private async request(url: URL | string, headers: Record<string, string>): Promise<HttpResponse> {
    try {
      return await httpGet(url, {
        headers,
        refuseRedirect: (to) => this.refuseLocal(to),
        refuseAddress: (to, address) => this.refuseLocalAddress(to, address),
        timeoutMs: this.idleTimeoutMs,
        ...(this.options.signal ? { signal: this.options.signal } : {}),
        ...(this.options.env ? { env: this.options.env } : {}),
      });
    } catch (error) {
      if (this.options.signal?.aborted) throw this.options.signal.reason;
      throw error;
    }
  }

  /** Why `url` is refused as a place a remote registry sends us to (a loopback or link-local host), or undefined. */
  private refuseLocal(url: URL): string | undefined {
    if (this.local || this.originResolvedLocal === true || !isLocalHostname(url.hostname)) return undefined;
    return `a registry on another host may not send us to a loopback or link-local address (${url.hostname})`;
  }

  /**
   * The same rule for what a name resolved to: a redirect or token realm naming a host that resolves to loopback
   * (the machine's own name often does) is refused. A registry whose own name resolves there (a local mirror in
   * /etc/hosts) is local, and may.
   */
  private refuseLocalAddress(url: URL, address: string): string | undefined {
    const local = isLocalHostname(address);
    if (url.origin === this.origin) {
      // Decided by the first answer: a name that resolved elsewhere first and here later is being rebound.
      this.originResolvedLocal ??= local;
      if (local && !this.originResolvedLocal && !this.local) return "it resolved to another host before (DNS rebinding?)";
      return undefined;
    }
    if (!local || this.local || this.originResolvedLocal === true) return undefined;
    return "a registry on another host may not send us to a loopback or link-local address";
  }

  /**
   * One authenticated GET: sends what the last challenge asked for, and on 401 reads the new challenge and tries
   * once more. A second 401 means the credentials are wrong.
   */
  private async get(path: string, scope: string, headers: Record<string, string>): Promise<HttpResponse> {
    const url = `${this.baseUrl}${path}`;
    for (let round = 0; round < 2; round++) {
      const authorization = await this.authorization(scope);
      const response = await this.request(url, { "user-agent": USER_AGENT, ...headers, ...(authorization ? { authorization } : {}) });
      if (response.status === 401) {
        response.cancel();
        if (response.url.origin !== new URL(this.baseUrl).origin) {
          // A host the registry redirected to (blob storage) asking for authentication: its challenge is not the
          // registry's, and answering it would send the registry's credentials to a realm that host names.
          throw this.fail(`GET ${path}: ${response.url.origin}, where the registry redirected the request, answered 401; not sending credentials there`);
        }
        const header = response.headers.get("www-authenticate") ?? "";
        const challenge = parseAuthChallenges(header).find((c) => c.scheme === "bearer" || c.scheme === "basic");
        if (round === 0 && challenge && !(authorization && challenge.scheme === "basic")) {
          this.challenge = challenge;
          this.tokens.delete(scope);
          if (challenge.scheme === "basic" && !(await this.credentials())) {
            throw this.fail(`401 Unauthorized: the registry requires credentials; run \`iii worker login ${this.registry}\` or add them to ~/.docker/config.json`);
          }
          continue;
        }
        const credentials = await this.credentials();
        throw this.fail(
          `401 Unauthorized: ` +
            (credentials
              ? `credentials for user "${credentials.username}" (from ${credentials.source}) were rejected`
              : `the registry requires credentials; run \`iii worker login ${this.registry}\``),
        );
      }
      if (response.status >= 500 || response.status === 429 || response.status === 408) {
        response.cancel();
        throw new RetryableError(`GET ${path} answered ${response.status}`);
      }
      return response;
    }
    throw this.fail(`GET ${path}: authentication did not succeed`);
  }

  /** Checks the registry speaks the v2 API and that our credentials are accepted (used by `login`). */
  async ping(repository?: string): Promise<void> {
    await this.withRetries("ping", async () => {
      const response = await this.get("/v2/", repository ? `repository:${repository}:pull` : "registry:catalog:*", {});
      response.cancel();
      if (!response.ok && response.status !== 404) throw this.fail(`GET /v2/ answered ${response.status}`);
    });
  }

  async getManifest(repository: string, reference: string): Promise<FetchedManifest> {
    const scope = `repository:${repository}:pull`;
    return this.withRetries(`manifest ${repository}:${reference}`, async () => {
      const response = await this.get(`/v2/${repository}/manifests/${reference}`, scope, { accept: MANIFEST_ACCEPT.join(", ") });
      if (response.status === 404) {
        response.cancel();
        throw this.fail(`manifest ${repository}:${reference} not found (404)`);
      }
      if (!response.ok) {
        response.cancel();
        throw this.fail(`manifest ${repository}:${reference}: HTTP ${response.status}`);
      }
      const declared = Number(response.headers.get("content-length") ?? "0");
      if (declared > MAX_JSON_BYTES) {
        response.cancel();
        throw this.fail(`manifest ${repository}:${reference} is larger than ${MAX_JSON_BYTES} bytes`);
      }
      const bytes = await this.body(response, () => this.fail(`manifest ${repository}:${reference} is larger than ${MAX_JSON_BYTES} bytes`));
      const digest = sha256Digest(bytes);
      if (reference.startsWith("sha256:") && digest !== reference) {
        throw new IiiError("ImagePullFailed", `registry ${this.registry}: manifest ${repository}@${reference} has digest ${digest}`);
      }
      return { bytes, mediaType: response.headers.get("content-type")?.split(";")[0]?.trim(), digest };
    });
  }

  /** A small blob (an image config) into memory, verified. */
  async getBlobBytes(repository: string, descriptor: Descriptor): Promise<Buffer> {
    if (descriptor.size > MAX_JSON_BYTES) throw this.fail(`blob ${descriptor.digest} is too large to be a config (${descriptor.size} bytes)`);
    return this.withRetries(`blob ${descriptor.digest}`, async () => {
      const response = await this.get(`/v2/${repository}/blobs/${descriptor.digest}`, `repository:${repository}:pull`, {});
      if (!response.ok) {
        response.cancel();
        throw this.fail(`blob ${descriptor.digest}: HTTP ${response.status}`);
      }
      const bytes = await this.body(response, () => this.fail(`blob ${descriptor.digest} is larger than ${MAX_JSON_BYTES} bytes`));
      if (sha256Digest(bytes) !== descriptor.digest) throw this.fail(`blob ${descriptor.digest}: digest mismatch`);
      return bytes;
    });
  }

  /**
   * Downloads a blob to `finalPath`, verifying size and digest while streaming. Progress survives a crash:
   * bytes go to `<partialDir>/<hex>.<pid>.partial`; a later run adopts the partial of a dead process and resumes
   * with a Range request.
   */
  async downloadBlob(
    repository: string,
    descriptor: Descriptor,
    finalPath: string,
    partialDir: string,
    onBytes: (bytes: number) => void = () => {},
  ): Promise<void> {
    const hex = descriptor.digest.slice(7);
    await mkdirs(partialDir);
    const partial = join(partialDir, `${hex}.${process.pid}.partial`);
    await adoptPartial(partialDir, hex, partial);
    let reported = 0;
    const report = (bytes: number) => {
      reported += bytes;
      onBytes(bytes);
    };
    await this.withRetries(`blob ${descriptor.digest}`, async () => {
      let offset = await stat(partial).then((s) => s.size, () => 0);
      if (offset > descriptor.size) {
        await rm(partial, { force: true });
        offset = 0;
      }
      let hash = newSha256();
      if (offset > 0) {
        for await (const chunk of createReadStream(partial, { end: offset - 1 })) hash.update(chunk as Buffer);
      }
      if (offset < descriptor.size) {
        const headers: Record<string, string> = offset > 0 ? { range: `bytes=${offset}-` } : {};
        const response = await this.get(`/v2/${repository}/blobs/${descriptor.digest}`, `repository:${repository}:pull`, headers);
        if (!response.ok) {
          response.cancel();
          if (response.status === 416) {
            await rm(partial, { force: true });
            throw new RetryableError("range not satisfiable; restarting the download");
          }
          throw this.fail(`blob ${descriptor.digest}: HTTP ${response.status}`);
        }
        if (offset > 0 && response.status !== 206) {
          // The registry ignored the Range header: start over.
          offset = 0;
          hash = newSha256();
        }
        report(offset - reported);
        const handle = await open(partial, offset > 0 ? "a" : "w");
        try {
          offset = await this.streamBody(response, descriptor, handle, hash, offset, report);
        } finally {
          await handle.close();
        }
      }
      if (offset !== descriptor.size) {
        throw new RetryableError(`blob ${descriptor.digest}: got ${offset} of ${descriptor.size} bytes`);
      }
      const actual = `sha256:${hash.digest("hex")}`;
      if (actual !== descriptor.digest) {
        await rm(partial, { force: true });
        throw this.fail(`blob ${descriptor.digest}: content has digest ${actual} (corrupt download or registry)`);
      }
      await rename(partial, finalPath);
    });
  }

  /** A small body (manifest, config) into memory; `tooLarge` names the error past MAX_JSON_BYTES. */
  private async body(response: HttpResponse, tooLarge: () => IiiError): Promise<Buffer> {
    try {
      return await response.bytes(MAX_JSON_BYTES);
    } catch (error) {
      if (error instanceof HttpError && error.code === "HttpTooLarge") throw tooLarge();
      throw error;
    }
  }

  /**
   * The body into the partial file: each chunk (a view of the client's reused read buffer) is hashed and written
   * before the next read, so nothing per chunk outlives it and a pull's RSS does not grow with the blob.
   */
  private async streamBody(
    response: HttpResponse,
    descriptor: Descriptor,
    handle: FileHandle,
    hash: Hash,
    start: number,
    onBytes: (n: number) => void,
  ): Promise<number> {
    let written = start;
    try {
      await response.pipe((chunk) => {
        written += chunk.byteLength;
        if (written > descriptor.size) throw this.fail(`blob ${descriptor.digest}: more than the ${descriptor.size} bytes its descriptor declares`);
        hash.update(chunk);
        for (let at = 0; at < chunk.byteLength; ) at += writeSync(handle.fd, chunk, at);
        onBytes(chunk.byteLength);
      });
    } catch (error) {
      if (error instanceof IiiError || error instanceof RetryableError) throw error;
      if (this.options.signal?.aborted) throw this.options.signal.reason;
      if (error instanceof HttpError && !error.transient) throw this.fail(`blob ${descriptor.digest}: ${error.message}`, error);
      // A connection reset mid-body: the partial file keeps what arrived, the retry resumes from there.
      throw new RetryableError(`download interrupted: ${(error as Error).message}`);
    }
    return written;
  }
}

/** TLS failures are not transient: retrying a plain-HTTP registry over https only wastes the backoff. */
function isTlsError(error: unknown): boolean {
  return error instanceof HttpError && error.code === "HttpTls";
}

function isNetworkError(error: unknown): boolean {
  return error instanceof HttpError && error.transient;
}

function describeFetchError(error: unknown, baseUrl: string): string {
  const message = (error as Error).message;
  if (isTlsError(error) && baseUrl.startsWith("https:")) {
    const code = /\(([A-Z_0-9]+)\)/.exec(message)?.[1] ?? "TLS error";
    return `TLS handshake with ${baseUrl} failed (${code}); if this registry speaks plain HTTP, name it with --insecure-registry`;
  }
  return message;
}

/** Takes over `<hex>.<pid>.partial` files left by processes that no longer run (kill -9 during a pull). */
async function adoptPartial(dir: string, hex: string, mine: string): Promise<void> {
  let names: string[];
  try {
    names = await readdir(dir);
  } catch {
    return;
  }
  for (const name of names) {
    const match = /^([a-f0-9]{64})\.(\d+)\.partial$/.exec(name);
    if (!match || match[1] !== hex || join(dir, name) === mine) continue;
    if (processStartTime(Number(match[2])) !== undefined) continue;
    try {
      await stat(mine);
      await rm(join(dir, name), { force: true });
    } catch {
      await rename(join(dir, name), mine).catch(() => undefined);
    }
  }
}
