import { createHash } from "node:crypto";
import { mkdirSync, readFileSync, renameSync, writeFileSync, existsSync } from "node:fs";
import { createServer, type Server } from "node:http";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { gunzipSync } from "node:zlib";

/**
 * An npm registry on this machine for the VM tests: it serves exactly the packages of one lockfile, so a guest's
 * `npm ci` never leaves the host. The tarballs are fetched once into a cache (a setup step, like the image
 * builds; checked against the lockfile's sha512 integrity) and served with packuments built from each
 * tarball's own package.json.
 */

export interface LockedPackage {
  name: string;
  version: string;
  integrity: string;
}

/** Every registry package a lockfile (v2/v3) installs: `node_modules/…/node_modules/<name>` entries with an integrity. */
export function lockedPackages(lockfilePath: string): LockedPackage[] {
  const lock = JSON.parse(readFileSync(lockfilePath, "utf8")) as { packages?: Record<string, { version?: string; integrity?: string; link?: boolean }> };
  const seen = new Map<string, LockedPackage>();
  for (const [key, entry] of Object.entries(lock.packages ?? {})) {
    const at = key.lastIndexOf("node_modules/");
    if (at < 0 || entry.link || !entry.version || !entry.integrity) continue;
    const name = key.slice(at + "node_modules/".length);
    seen.set(`${name}@${entry.version}`, { name, version: entry.version, integrity: entry.integrity });
  }
  return [...seen.values()];
}

const unscoped = (name: string) => name.slice(name.lastIndexOf("/") + 1);
const tarballPath = (name: string, version: string) => `/${name}/-/${unscoped(name)}-${version}.tgz`;

function sha512Hex(integrity: string): string {
  const match = /(?:^|\s)sha512-([A-Za-z0-9+/=]+)/.exec(integrity);
  if (!match) throw new Error(`npm fixture: no sha512 in integrity "${integrity}"`);
  return Buffer.from(match[1]!, "base64").toString("hex");
}

function integrityOf(bytes: Buffer): string {
  return `sha512-${createHash("sha512").update(bytes).digest("base64")}`;
}

export function npmCacheDir(): string {
  return join(process.env.III_TEST_CACHE ?? join(tmpdir(), "iii-test-cache"), "npm");
}

/** The locked packages whose tarball the cache lacks. */
export function missingTarballs(packages: LockedPackage[], cacheDir = npmCacheDir()): LockedPackage[] {
  return packages.filter((p) => !existsSync(join(cacheDir, `${sha512Hex(p.integrity)}.tgz`)));
}

/**
 * Fetches the tarballs the cache lacks from the public registry, each checked against its integrity; returns how
 * many it fetched. Setup only (scripts/fetch-test-fixtures.mjs, run by scripts/bootstrap.sh): tests read the cache.
 */
export async function ensureTarballs(packages: LockedPackage[], cacheDir = npmCacheDir(), upstream = "https://registry.npmjs.org"): Promise<number> {
  mkdirSync(cacheDir, { recursive: true });
  const missing = missingTarballs(packages, cacheDir);
  for (let i = 0; i < missing.length; i += 8) {
    await Promise.all(
      missing.slice(i, i + 8).map(async (p) => {
        const url = `${upstream}${tarballPath(p.name, p.version)}`;
        // A registry that stalls, drops a download or answers 5xx/429 is retried (setup work, not a test's
        // verdict); any other HTTP status is final.
        let bytes: Buffer | undefined;
        for (let attempt = 1; !bytes; attempt++) {
          let retryable = true;
          try {
            const response = await fetch(url, { signal: AbortSignal.timeout(60_000) });
            if (!response.ok) {
              retryable = response.status >= 500 || response.status === 429;
              throw new Error(`npm fixture: ${url}: HTTP ${response.status}`);
            }
            bytes = Buffer.from(await response.arrayBuffer());
          } catch (error) {
            if (!retryable || attempt >= 3) throw error;
            await new Promise((r) => setTimeout(r, 2000 * attempt));
          }
        }
        if (integrityOf(bytes) !== p.integrity.split(/\s+/).find((i) => i.startsWith("sha512-"))) {
          throw new Error(`npm fixture: ${url} does not match the lockfile's integrity`);
        }
        const file = join(cacheDir, `${sha512Hex(p.integrity)}.tgz`);
        writeFileSync(`${file}.${process.pid}.tmp`, bytes);
        renameSync(`${file}.${process.pid}.tmp`, file);
      }),
    );
  }
  return missing.length;
}

/** The package.json inside an npm tarball (`package/package.json`, whatever the top directory is called). */
export function packageJsonOf(tgz: Buffer): Record<string, unknown> {
  const tar = gunzipSync(tgz);
  for (let at = 0; at + 512 <= tar.length; ) {
    const header = tar.subarray(at, at + 512);
    if (header.every((b) => b === 0)) break;
    const field = (from: number, length: number) => header.subarray(from, from + length).toString("latin1").replace(/\0.*$/s, "");
    const size = parseInt(field(124, 12).trim() || "0", 8);
    const prefix = field(345, 155);
    const name = prefix ? `${prefix}/${field(0, 100)}` : field(0, 100);
    const type = field(156, 1) || "0";
    if (type === "0" && /^[^/]+\/package\.json$/.test(name)) {
      return JSON.parse(tar.subarray(at + 512, at + 512 + size).toString("utf8")) as Record<string, unknown>;
    }
    at += 512 + Math.ceil(size / 512) * 512;
  }
  throw new Error("npm fixture: tarball without a top-level package.json");
}

export interface NpmRegistry {
  /** `http://127.0.0.1:<port>/` */
  url: string;
  port: number;
  /** `METHOD path @<seconds since start>s` in arrival order (metadata and tarballs). */
  requests: string[];
  tarballsServed(): number;
  close(): Promise<void>;
}

/**
 * Serves `GET /<name>` (a packument holding only the locked versions) and `GET /<name>/-/<file>.tgz` on
 * 127.0.0.1. Anything else is a 404, which `npm ci` reports as the failure it is.
 */
export async function startNpmRegistry(packages: LockedPackage[], cacheDir = npmCacheDir()): Promise<NpmRegistry> {
  const tarballs = new Map<string, Buffer>();
  const versions = new Map<string, Map<string, { manifest: Record<string, unknown>; tarball: string; integrity: string }>>();
  for (const p of packages) {
    const bytes = readFileSync(join(cacheDir, `${sha512Hex(p.integrity)}.tgz`));
    const path = tarballPath(p.name, p.version);
    tarballs.set(path, bytes);
    const byVersion = versions.get(p.name) ?? new Map();
    byVersion.set(p.version, { manifest: packageJsonOf(bytes), tarball: path, integrity: integrityOf(bytes) });
    versions.set(p.name, byVersion);
  }
  const requests: string[] = [];
  const started = Date.now();
  let served = 0;
  const server: Server = createServer((req, res) => {
    const path = decodeURIComponent((req.url ?? "/").split("?")[0]!);
    // When each request came (seconds since the registry started): a retried download shows as a late repeat.
    requests.push(`${req.method} ${path} @${((Date.now() - started) / 1000).toFixed(1)}s`);
    const tarball = req.method === "GET" ? tarballs.get(path) : undefined;
    if (tarball) {
      served += 1;
      res.writeHead(200, { "content-type": "application/octet-stream", "content-length": tarball.length });
      res.end(tarball);
      return;
    }
    const byVersion = req.method === "GET" ? versions.get(path.slice(1)) : undefined;
    if (!byVersion) {
      res.writeHead(404, { "content-type": "application/json" });
      res.end('{"error":"not found"}');
      return;
    }
    const name = path.slice(1);
    // Tarball URLs on the address the client used: the guest knows this host as host.iii.internal.
    const base = `http://${req.headers.host ?? "127.0.0.1"}/`;
    const sorted = [...byVersion.keys()].sort((a, b) => a.localeCompare(b, "en", { numeric: true }));
    const body = JSON.stringify({
      name,
      "dist-tags": { latest: sorted.at(-1) },
      versions: Object.fromEntries(
        [...byVersion].map(([version, v]) => [
          version,
          { ...v.manifest, name, version, dist: { tarball: `${base}${v.tarball.slice(1)}`, integrity: v.integrity } },
        ]),
      ),
    });
    res.writeHead(200, { "content-type": "application/json" });
    res.end(body);
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const port = (server.address() as { port: number }).port;
  return {
    url: `http://127.0.0.1:${port}/`,
    port,
    requests,
    tarballsServed: () => served,
    close: () => new Promise((resolve) => server.close(() => resolve())),
  };
}
