import { spawn } from "node:child_process";
import { randomBytes } from "node:crypto";
import { mkdtemp, readdir, rm, stat } from "node:fs/promises";
import { createServer, request, type Server } from "node:http";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { ensureImage } from "../../src/images/index.js";
import { bundleEnsureRunner } from "./fixtures/child.js";
import { writeLayout, type TarEntrySpec } from "./fixtures/oci-writer.js";
import { missingTools, skopeoPush, startRegistry, type TestRegistry } from "./fixtures/registry.js";
import { describeTree } from "./fixtures/tree.js";

const missing = missingTools();
if (missing) console.warn(`[images] skipping crash tests: ${missing}`);

/** A proxy that forwards to the registry and slows response bodies to `bytesPerSecond`, so a pull can be killed mid-blob. */
async function slowProxy(target: string, bytesPerSecond: number): Promise<{ host: string; close: () => Promise<void> }> {
  const [hostname, port] = target.split(":");
  const server: Server = createServer((req, res) => {
    const upstream = request({ hostname, port: Number(port), path: req.url, method: req.method, headers: { ...req.headers, host: target } }, (up) => {
      res.writeHead(up.statusCode ?? 502, up.headers);
      up.on("data", (chunk: Buffer) => {
        up.pause();
        res.write(chunk);
        setTimeout(() => up.resume(), (chunk.length / bytesPerSecond) * 1000);
      });
      up.on("end", () => res.end());
    });
    upstream.on("error", () => res.destroy());
    req.pipe(upstream);
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const address = server.address() as { port: number };
  return {
    host: `127.0.0.1:${address.port}`,
    close: () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
}

/**
 * A proxy that fails every blob twice before serving it: first a 503, then the first half of the body and a
 * reset connection. A client that retries and resumes (Range) still gets the blob.
 */
async function flakyProxy(target: string): Promise<{ host: string; faults: () => number; close: () => Promise<void> }> {
  const [hostname, port] = target.split(":");
  const attempts = new Map<string, number>();
  let faults = 0;
  const server: Server = createServer((req, res) => {
    const isBlob = /\/blobs\/sha256:/.test(req.url ?? "") && req.method === "GET";
    const attempt = (attempts.get(req.url ?? "") ?? 0) + 1;
    if (isBlob) attempts.set(req.url ?? "", attempt);
    if (isBlob && attempt === 1) {
      faults += 1;
      res.writeHead(503, { "content-type": "text/plain" });
      res.end("try again");
      return;
    }
    const upstream = request({ hostname, port: Number(port), path: req.url, method: req.method, headers: { ...req.headers, host: target } }, (up) => {
      res.writeHead(up.statusCode ?? 502, up.headers);
      const length = Number(up.headers["content-length"] ?? 0);
      if (isBlob && attempt === 2 && length > 1024) {
        faults += 1;
        let sent = 0;
        up.on("data", (chunk: Buffer) => {
          if (sent >= length / 2) return;
          res.write(chunk.subarray(0, Math.min(chunk.length, Math.ceil(length / 2) - sent)));
          sent += chunk.length;
          if (sent >= length / 2) setTimeout(() => res.socket?.destroy(), 20);
        });
        return;
      }
      up.pipe(res);
    });
    upstream.on("error", () => res.destroy());
    req.pipe(upstream);
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  return {
    host: `127.0.0.1:${(server.address() as { port: number }).port}`,
    faults: () => faults,
    close: () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
}

async function waitFor(what: string, check: () => Promise<boolean>, timeoutMs = 30_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 10));
  }
}

const listOrEmpty = (dir: string) => readdir(dir).catch(() => [] as string[]);

describe.skipIf(missing !== undefined)("kill -9 during a pull or an extraction, then the same command again", () => {
  let work: string;
  let runner: string;
  let registry: TestRegistry;

  beforeAll(async () => {
    work = await mkdtemp(join(tmpdir(), "iii-img-crash-"));
    runner = await bundleEnsureRunner(work);
    registry = await startRegistry();
  });

  afterAll(async () => {
    await registry?.stop();
    await rm(work, { recursive: true, force: true });
  });

  function startChild(args: string[]) {
    const child = spawn(process.execPath, [runner, ...args], { stdio: ["ignore", "pipe", "pipe"] });
    let stderr = "";
    child.stderr.on("data", (d) => (stderr += d));
    const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) => child.on("exit", (code, signal) => resolve({ code, signal })));
    return { child, exited, stderr: () => stderr };
  }

  it("during a blob download: no image in the cache, and the rerun resumes and completes", async () => {
    const layout = join(work, "big");
    const layers = [0, 1].map((i) => ({ compression: "none" as const, entries: [{ name: `blob${i}`, content: randomBytes(6 * 1024 * 1024) }] }));
    await writeLayout(layout, "1", { layers });
    await skopeoPush(`oci:${layout}:1`, registry, "test/big:1");
    const proxy = await slowProxy(registry.host, 8 * 1024 * 1024);
    const home = join(work, "home-pull");
    const image = `${proxy.host}/test/big:1`;
    try {
      const run = startChild([image, home, proxy.host]);
      const partialDir = join(home, "images", "blobs", "partial");
      await waitFor("a partial blob", async () => {
        for (const name of await listOrEmpty(partialDir)) {
          if ((await stat(join(partialDir, name)).catch(() => undefined))?.size ?? 0 > 1024 * 1024) return true;
        }
        return false;
      });
      run.child.kill("SIGKILL");
      expect((await run.exited).signal).toBe("SIGKILL");
      expect(await listOrEmpty(join(home, "images", "sha256"))).toEqual([]);
      const partials = await listOrEmpty(partialDir);
      expect(partials.length).toBeGreaterThan(0);

      const log = registry.log().length;
      const result = await ensureImage(image, { home, insecureRegistries: [proxy.host] });
      expect(result.cached).toBe(false);
      // the rerun asked for the rest of the partial blob only
      expect(registry.log().slice(log)).toMatch(/" 206 /);
      expect(await listOrEmpty(partialDir)).toEqual([]);
      expect(await listOrEmpty(join(home, "images", "tmp"))).toEqual([]);
      expect((await stat(join(result.rootfs, "blob1"))).size).toBe(6 * 1024 * 1024);
    } finally {
      await proxy.close();
    }
  });

  it("retries 5xx answers and resumes a connection cut mid-blob", async () => {
    const layout = join(work, "flaky");
    await writeLayout(layout, "1", { layers: [0, 1, 2].map((i) => ({ compression: "none" as const, entries: [{ name: `f${i}`, content: randomBytes(512 * 1024) }] })) });
    await skopeoPush(`oci:${layout}:1`, registry, "test/flaky:1");
    const proxy = await flakyProxy(registry.host);
    try {
      const log = registry.log().length;
      const image = await ensureImage(`${proxy.host}/test/flaky:1`, { home: join(work, "home-flaky"), insecureRegistries: [proxy.host] });
      expect(proxy.faults()).toBe(7); // the config: a 503 (it is too small to cut); 3 layers: a 503 and a cut each
      expect(registry.log().slice(log)).toMatch(/" 206 /);
      expect((await stat(join(image.rootfs, "f2"))).size).toBe(512 * 1024);
    } finally {
      await proxy.close();
    }
  });

  it("two processes pulling the same image at once both succeed and leave one image", async () => {
    const layout = join(work, "twice");
    await writeLayout(layout, "1", { layers: [0, 1].map((i) => ({ entries: [{ name: `f${i}`, content: randomBytes(1024 * 1024) }] })) });
    await skopeoPush(`oci:${layout}:1`, registry, "test/twice:1");
    const home = join(work, "home-twice");
    const runs = [0, 1].map(() => startChild([`${registry.host}/test/twice:1`, home, registry.host]));
    const results = await Promise.all(runs.map((r) => r.exited));
    expect(results, runs.map((r) => r.stderr()).join("\n")).toEqual([
      { code: 0, signal: null },
      { code: 0, signal: null },
    ]);
    expect((await listOrEmpty(join(home, "images", "sha256"))).length).toBe(1);
    expect(await listOrEmpty(join(home, "images", "tmp"))).toEqual([]);
    expect(await listOrEmpty(join(home, "images", "blobs", "partial"))).toEqual([]);

    // and twice at once in one process (partial files are per pid: the downloads must be shared)
    const inProcess = join(work, "home-twice-in-process");
    const opts = { home: inProcess, insecureRegistries: [registry.host] };
    const [a, b] = await Promise.all([ensureImage(`${registry.host}/test/twice:1`, opts), ensureImage(`${registry.host}/test/twice:1`, opts)]);
    expect(a.digest).toBe(b.digest);
    expect(a.rootfs).toBe(b.rootfs);
    expect((await stat(join(a.rootfs, "f1"))).size).toBe(1024 * 1024);
    expect(await listOrEmpty(join(inProcess, "images", "tmp"))).toEqual([]);
  });

  it("during layer extraction: the staging dir is swept and the rerun completes", async () => {
    const layout = join(work, "many");
    const entries: TarEntrySpec[] = [];
    for (let d = 0; d < 60; d++) {
      entries.push({ name: `d${d}/`, type: "directory" });
      for (let f = 0; f < 200; f++) entries.push({ name: `d${d}/f${f}`, content: `file ${d}/${f}` });
    }
    await writeLayout(layout, "1", { layers: [{ entries }] });
    const home = join(work, "home-extract");
    const run = startChild([`oci:${layout}:1`, home]);
    const tmp = join(home, "images", "tmp");
    await waitFor("extraction in progress", async () => {
      for (const name of await listOrEmpty(tmp)) {
        if ((await listOrEmpty(join(tmp, name, "rootfs"))).length > 5) return true;
      }
      return false;
    });
    run.child.kill("SIGKILL");
    expect((await run.exited).signal).toBe("SIGKILL");
    expect(await listOrEmpty(join(home, "images", "sha256"))).toEqual([]);
    expect((await listOrEmpty(tmp)).length).toBe(1);

    const again = startChild([`oci:${layout}:1`, home]);
    const done = await again.exited;
    expect(done, again.stderr()).toEqual({ code: 0, signal: null });
    expect(await listOrEmpty(tmp)).toEqual([]);
    const image = await ensureImage(`oci:${layout}:1`, { home, pull: "never" });
    const tree = await describeTree(image.rootfs);
    expect(Object.keys(tree).length).toBe(60 * 201);
  });
});
