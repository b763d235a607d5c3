import { mkdtemp, rm } from "node:fs/promises";
import { createServer as createHttpServer, request as httpRequest, type Server as HttpServer } from "node:http";
import { connect, type Socket } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { proxySettings } from "../../src/images/registry/proxy.js";
import { writeLayout } from "../images/fixtures/oci-writer.js";
import { missingTools, skopeoPush, startRegistry, type TestRegistry } from "../images/fixtures/registry.js";
import { runWorkerCli } from "../helpers.js";

const missing = missingTools();
if (missing) console.warn(`[cli] skipping proxy tests: ${missing}`);

/**
 * A small real HTTP proxy on loopback: CONNECT tunnels (what https targets use) and absolute-form forwarding
 * (what plain-HTTP targets such as this insecure test registry use), recording every request it carries.
 */
async function startProxy(): Promise<{ url: string; requests: string[]; stop: () => Promise<void> }> {
  const requests: string[] = [];
  const sockets = new Set<Socket>();
  const server: HttpServer = createHttpServer((req, res) => {
    requests.push(`${req.method} ${req.url}`);
    let target: URL;
    try {
      target = new URL(req.url ?? "");
    } catch {
      res.writeHead(400).end();
      return;
    }
    const upstream = httpRequest(
      { host: target.hostname, port: target.port || 80, method: req.method, path: `${target.pathname}${target.search}`, headers: { ...req.headers, connection: "close" } },
      (answer) => {
        res.writeHead(answer.statusCode ?? 502, answer.headers);
        answer.pipe(res);
      },
    );
    upstream.on("error", () => res.destroy());
    req.pipe(upstream);
  });
  server.on("connection", (socket: Socket) => {
    sockets.add(socket);
    socket.on("close", () => sockets.delete(socket));
  });
  server.on("connect", (req, client: Socket, head: Buffer) => {
    requests.push(`CONNECT ${req.url}`);
    const target = req.url ?? "";
    const colon = target.lastIndexOf(":");
    const upstream = connect(Number(target.slice(colon + 1)), target.slice(0, colon).replace(/^\[|\]$/g, ""), () => {
      client.write("HTTP/1.1 200 Connection Established\r\n\r\n");
      if (head.length) upstream.write(head);
      client.pipe(upstream).pipe(client);
    });
    sockets.add(upstream);
    upstream.on("close", () => sockets.delete(upstream));
    upstream.on("error", () => client.destroy());
    client.on("error", () => upstream.destroy());
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  return {
    url: `http://127.0.0.1:${(server.address() as { port: number }).port}`,
    requests,
    stop: () =>
      new Promise((resolve) => {
        for (const s of sockets) s.destroy();
        server.close(() => resolve());
      }),
  };
}

/** Every proxy variable of the test's own environment, cleared, so only what a test sets counts. */
const NO_PROXY_ENV = { http_proxy: "", HTTP_PROXY: "", https_proxy: "", HTTPS_PROXY: "", no_proxy: "", NO_PROXY: "" };

describe.skipIf(missing !== undefined)("registry pulls go through HTTPS_PROXY/HTTP_PROXY, except NO_PROXY hosts", () => {
  let work: string;
  let registry: TestRegistry;
  let proxy: Awaited<ReturnType<typeof startProxy>>;

  beforeAll(async () => {
    work = await mkdtemp(join(tmpdir(), "iii-proxy-"));
    registry = await startRegistry();
    proxy = await startProxy();
    const layout = join(work, "layout");
    await writeLayout(layout, "1", { config: { Cmd: ["/marker"] }, layers: [{ entries: [{ name: "marker", content: "via proxy" }] }] });
    await skopeoPush(`oci:${layout}:1`, registry, "test/app:1");
  });
  afterAll(async () => {
    await Promise.all([registry?.stop(), proxy?.stop()]);
    await rm(work, { recursive: true, force: true });
  });

  const add = async (name: string, env: NodeJS.ProcessEnv) => {
    const cwd = await mkdtemp(join(work, `${name}-`));
    return runWorkerCli(["add", `${registry.host}/test/app:1`, "--name", name, "--insecure-registry", registry.host], {
      cwd,
      env: { ...NO_PROXY_ENV, III_HOME: join(cwd, "home"), ...env },
    });
  };

  it("iii-worker add pulls through the proxy: every registry request is carried by it", async () => {
    const before = proxy.requests.length;
    const blobsBefore = registry.blobGets();
    const run = await add("proxied", { HTTP_PROXY: proxy.url });
    expect(run.code, run.stderr).toBe(0);
    expect(run.stderr).toContain("added worker proxied");
    expect(registry.blobGets() - blobsBefore).toBe(2); // config + layer
    const carried = proxy.requests.slice(before);
    const base = `http://${registry.host}/v2/test/app/`;
    expect(carried).toContain(`GET ${base}manifests/1`);
    expect(carried.filter((r) => r.startsWith(`GET ${base}blobs/sha256:`))).toHaveLength(2);
    expect(carried.every((r) => r.startsWith(`GET http://${registry.host}/v2/`) || r.startsWith(`HEAD http://${registry.host}/v2/`))).toBe(true);
  });

  it("an https registry is reached through a CONNECT tunnel of HTTPS_PROXY", async () => {
    // nothing speaks TLS on the registry's port, so the handshake fails, but only after the proxy opened the tunnel
    const before = proxy.requests.length;
    const cwd = await mkdtemp(join(work, "tls-"));
    const run = await runWorkerCli(["add", `${registry.host}/test/app:1`], {
      cwd,
      env: { ...NO_PROXY_ENV, III_HOME: join(cwd, "home"), HTTPS_PROXY: proxy.url },
    });
    expect(run.code).toBe(1);
    expect(run.stderr).toContain("[ImagePullFailed]");
    expect(proxy.requests.slice(before)).toContain(`CONNECT ${registry.host}`);
  }, 120_000);

  it("the lowercase spelling works too", async () => {
    const before = proxy.requests.length;
    const run = await add("lower", { http_proxy: proxy.url });
    expect(run.code, run.stderr).toBe(0);
    expect(proxy.requests.length).toBeGreaterThan(before);
  });

  it("NO_PROXY naming the registry host bypasses the proxy", async () => {
    const before = proxy.requests.length;
    const blobsBefore = registry.blobGets();
    const run = await add("direct", { HTTP_PROXY: proxy.url, NO_PROXY: "example.org,127.0.0.1" });
    expect(run.code, run.stderr).toBe(0);
    expect(registry.blobGets() - blobsBefore).toBe(2);
    expect(proxy.requests.length).toBe(before);
  });

  it("a proxy that is down fails the pull with one line naming the registry (it does not go around the proxy)", async () => {
    const dead = await startProxy();
    await dead.stop();
    const blobsBefore = registry.blobGets();
    const cwd = await mkdtemp(join(work, "dead-"));
    const run = await runWorkerCli(["add", `${registry.host}/test/app:1`, "--insecure-registry", registry.host], {
      cwd,
      env: { ...NO_PROXY_ENV, III_HOME: join(cwd, "home"), HTTP_PROXY: dead.url },
    });
    expect(run.code).toBe(1);
    expect(run.stderr.trimEnd().split("\n")).toHaveLength(1);
    expect(run.stderr).toMatch(new RegExp(`^iii-worker: registry ${registry.host.replace(/[.]/g, "\\.")}: .* \\[ImagePullFailed\\]$`, "m"));
    expect(registry.blobGets()).toBe(blobsBefore);
  }, 120_000);
});

describe("proxySettings", () => {
  it("prefers the lowercase spelling, and ignores empty values", () => {
    expect(proxySettings({ HTTP_PROXY: "http://a:1", http_proxy: "http://b:2", HTTPS_PROXY: "http://c:3", NO_PROXY: "x" })).toEqual({
      httpProxy: "http://b:2",
      httpsProxy: "http://c:3",
      noProxy: "x",
    });
    expect(proxySettings({ http_proxy: "", HTTP_PROXY: "" })).toEqual({});
  });
});
