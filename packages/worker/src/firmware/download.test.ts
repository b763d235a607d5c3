import { createHash } from "node:crypto";
import { existsSync, mkdtempSync, readdirSync, readFileSync, readlinkSync, rmSync } from "node:fs";
import { createServer, type Server } from "node:http";
import type { AddressInfo } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { gzipSync } from "node:zlib";
import * as tar from "tar-stream";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { isIiiError } from "../errors.js";
import type { FirmwareManifest } from "./manifest.js";
import { FirmwareResolver } from "./resolver.js";

const payload = Buffer.from("\x7fELF pretend libkrunfw ".repeat(4096));
const payloadSha = createHash("sha256").update(payload).digest("hex");

async function tarGz(member: string, data: Buffer): Promise<Buffer> {
  const pack = tar.pack();
  pack.entry({ name: "package/package.json" }, Buffer.from("{}"));
  pack.entry({ name: member, mode: 0o644 }, data);
  pack.finalize();
  const chunks: Buffer[] = [];
  for await (const chunk of pack) chunks.push(chunk as Buffer);
  return gzipSync(Buffer.concat(chunks));
}

describe("firmware download (local HTTP server)", () => {
  let server: Server;
  let base: string;
  let archive: Buffer;
  const root = mkdtempSync(join(tmpdir(), "iii-fw-download-"));
  const requests: string[] = [];

  beforeAll(async () => {
    archive = await tarGz("package/lib/libkrunfw.so.5.6.1", payload);
    server = createServer((req, res) => {
      requests.push(req.url ?? "");
      if (req.url === "/good/libkrunfw.so.5.6.1" || req.url === "/wrong/libkrunfw.so.5.6.1") {
        res.writeHead(200, { "content-length": payload.length });
        res.end(payload);
      } else if (req.url === "/pkg.tgz") {
        res.writeHead(200, { "content-length": archive.length });
        res.end(archive);
      } else if (req.url === "/truncated") {
        res.writeHead(200, { "content-length": payload.length });
        res.write(payload.subarray(0, payload.length / 2), () => res.socket?.destroy());
      } else {
        res.writeHead(404, { "content-type": "text/plain" });
        res.end("not here");
      }
    });
    await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
    base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  });

  afterAll(async () => {
    await new Promise((r) => server.close(r));
    rmSync(root, { recursive: true, force: true });
  });

  function manifest(url: string, overrides: Partial<FirmwareManifest["platforms"][string]> = {}): FirmwareManifest {
    return {
      name: "libkrunfw",
      version: "5.6.1",
      abi: 5,
      platforms: { "linux-x86_64": { file: "libkrunfw.so.5.6.1", soname: "libkrunfw.so.5", size: payload.length, sha256: payloadSha, url, ...overrides } },
    };
  }

  function resolver(name: string, m: FirmwareManifest): { resolver: FirmwareResolver; lib: string } {
    const home = join(root, name);
    return {
      resolver: new FirmwareResolver({ env: { III_HOME: home }, manifest: m, platform: "linux-x86_64", systemDirs: [], npmPackageDir: null, download: true }),
      lib: join(home, "lib"),
    };
  }

  it("downloads a good file, verifies it, installs it with SONAME links; the next resolve finds it in ~/.iii/lib", async () => {
    const { resolver: r, lib } = resolver("good", manifest(`${base}/good/libkrunfw.so.5.6.1`));
    let started = "";
    const progress: number[] = [];
    const resolved = await new FirmwareResolver({
      ...{ env: r.env, manifest: r.manifest, platform: "linux-x86_64", systemDirs: [], npmPackageDir: null, download: true },
      onDownloadStart: (url) => (started = url),
      onDownloadProgress: (p) => progress.push(p.receivedBytes),
    }).resolve();
    expect(started).toBe(`${base}/good/libkrunfw.so.5.6.1`);
    expect(progress.at(-1)).toBe(payload.length);
    expect(resolved.source).toBe("download");
    expect(resolved.path).toBe(join(lib, "libkrunfw.so.5.6.1"));
    expect(readFileSync(resolved.path).equals(payload)).toBe(true);
    expect(readlinkSync(join(lib, "libkrunfw.so.5"))).toBe("libkrunfw.so.5.6.1");
    expect(readlinkSync(join(lib, "libkrunfw.so"))).toBe("libkrunfw.so.5");
    expect(readdirSync(lib).sort()).toEqual(["libkrunfw.so", "libkrunfw.so.5", "libkrunfw.so.5.6.1"]);
    const again = await r.resolve();
    expect(again.source).toBe("home");
  });

  it("takes the pinned member out of a .tar.gz, checking the archive's digest too", async () => {
    const archiveSha = createHash("sha256").update(archive).digest("hex");
    const { resolver: r, lib } = resolver("tgz", manifest(`${base}/pkg.tgz`, { archive: { format: "tar.gz", member: "package/lib/libkrunfw.so.5.6.1", size: archive.length, sha256: archiveSha } }));
    const resolved = await r.resolve();
    expect(readFileSync(resolved.path).equals(payload)).toBe(true);
    expect(readdirSync(lib).sort()).toEqual(["libkrunfw.so", "libkrunfw.so.5", "libkrunfw.so.5.6.1"]);

    const { resolver: bad, lib: badLib } = resolver("tgz-bad", manifest(`${base}/pkg.tgz`, { archive: { format: "tar.gz", member: "package/lib/other.so" } }));
    const error = await bad.resolve().catch((e: unknown) => e);
    expect(isIiiError(error, "FirmwareDownloadFailed")).toBe(true);
    expect((error as Error).message).toContain("'package/lib/other.so' not found");
    expect(readdirSync(badLib)).toEqual([]);
  });

  it("a wrong digest is FirmwareCorrupt naming both digests, and nothing is installed", async () => {
    const expected = "ab".repeat(32);
    const { resolver: r, lib } = resolver("wrong", manifest(`${base}/wrong/libkrunfw.so.5.6.1`, { sha256: expected }));
    const error = await r.resolve().catch((e: unknown) => e);
    expect(isIiiError(error, "FirmwareCorrupt")).toBe(true);
    expect((error as Error).message).toContain(`sha256 ${payloadSha}, expected ${expected}`);
    expect(readdirSync(lib)).toEqual([]);
  });

  it("HTTP 404 is FirmwareDownloadFailed with the status and URL", async () => {
    const { resolver: r, lib } = resolver("404", manifest(`${base}/missing.so`));
    const error = await r.resolve().catch((e: unknown) => e);
    expect(isIiiError(error, "FirmwareDownloadFailed")).toBe(true);
    expect((error as Error).message).toContain(`${base}/missing.so: HTTP 404`);
    expect(readdirSync(lib)).toEqual([]);
  });

  it("a truncated body is FirmwareDownloadFailed, and no partial file is left", async () => {
    const { resolver: r, lib } = resolver("trunc", manifest(`${base}/truncated`));
    const error = await r.resolve().catch((e: unknown) => e);
    expect(isIiiError(error, "FirmwareDownloadFailed")).toBe(true);
    expect((error as Error).message).toMatch(/truncated|failed after/);
    expect(readdirSync(lib)).toEqual([]);
    expect(existsSync(join(lib, "libkrunfw.so.5.6.1"))).toBe(false);
  });

  it("a refused connection is FirmwareDownloadFailed", async () => {
    const closed = createServer();
    await new Promise<void>((r) => closed.listen(0, "127.0.0.1", r));
    const port = (closed.address() as AddressInfo).port;
    await new Promise((r) => closed.close(r));
    const { resolver: r } = resolver("refused", manifest(`http://127.0.0.1:${port}/libkrunfw.so.5.6.1`));
    const error = await r.resolve().catch((e: unknown) => e);
    expect(isIiiError(error, "FirmwareDownloadFailed")).toBe(true);
    expect((error as Error).message).toMatch(/ECONNREFUSED/);
  });
});
