import { execFileSync } from "node:child_process";
import { createHash, randomBytes } from "node:crypto";
import { mkdtemp, readFile, rm } from "node:fs/promises";
import { createServer, request as httpRequest, type IncomingMessage, type Server, type ServerResponse } from "node:http";
import { createServer as createHttpsServer } from "node:https";
import { createServer as createNetServer, Socket, type Server as NetServer } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { ensureImage } from "../../src/images/index.js";
import { httpGet, HttpError, type HttpResponse } from "../../src/images/registry/http.js";
import { proxyFor } from "../../src/images/registry/proxy.js";
import { writeLayout } from "./fixtures/oci-writer.js";
import { missingTools, skopeoPush, startRegistry, type TestRegistry } from "./fixtures/registry.js";

const missing = missingTools();
/** No proxy from the test's own environment. */
const env: NodeJS.ProcessEnv = {};

async function listen<T extends Server | NetServer>(server: T): Promise<T & { port: number }> {
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  return Object.assign(server, { port: (server.address() as { port: number }).port });
}

function closeAll(server: Server | NetServer, sockets: Set<Socket>): Promise<void> {
  for (const s of sockets) s.destroy();
  return new Promise((resolve) => server.close(() => resolve()));
}

/** A raw TCP server answering every connection with `answer` (the request head is read first). */
async function rawServer(answer: (socket: Socket) => void) {
  const sockets = new Set<Socket>();
  const server = createNetServer((socket) => {
    sockets.add(socket);
    socket.on("close", () => sockets.delete(socket));
    socket.on("error", () => undefined);
    let head = "";
    const onData = (d: Buffer) => {
      head += d.toString("latin1");
      if (!head.includes("\r\n\r\n")) return;
      socket.off("data", onData);
      answer(socket);
    };
    socket.on("data", onData);
  });
  const listening = await listen(server);
  return { url: `http://127.0.0.1:${listening.port}`, stop: () => closeAll(server, sockets) };
}

/** A node:http server with a request handler; records the requests it saw (url + authorization). */
async function httpServer(handler: (req: IncomingMessage, res: ServerResponse) => void) {
  const sockets = new Set<Socket>();
  const seen: { url: string; authorization: string | undefined; host: string | undefined }[] = [];
  const server = createServer((req, res) => {
    seen.push({ url: req.url ?? "", authorization: req.headers.authorization, host: req.headers.host });
    handler(req, res);
  });
  server.on("connection", (s: Socket) => {
    sockets.add(s);
    s.on("close", () => sockets.delete(s));
  });
  const listening = await listen(server);
  return { url: `http://127.0.0.1:${listening.port}`, seen, stop: () => closeAll(server, sockets) };
}

/** A CONNECT proxy that tunnels to the host:port asked for (localhost as 127.0.0.1); records each CONNECT line. */
async function connectProxy() {
  const requests: string[] = [];
  const sockets = new Set<Socket>();
  const proxy = createServer();
  proxy.on("connect", (req: IncomingMessage, client: Socket) => {
    requests.push(`CONNECT ${req.url} ${req.headers["proxy-authorization"] ?? ""}`);
    const [host, port] = (req.url ?? "").split(":");
    const upstream = new Socket();
    upstream.connect(Number(port), host === "localhost" ? "127.0.0.1" : host!, () => {
      client.write("HTTP/1.1 200 Connection Established\r\n\r\n");
      client.pipe(upstream).pipe(client);
    });
    for (const s of [client, upstream]) {
      sockets.add(s);
      s.on("error", () => undefined);
    }
  });
  const listening = await listen(proxy);
  return { port: listening.port, requests, stop: () => closeAll(listening, sockets) };
}

async function collect(response: HttpResponse): Promise<Buffer> {
  const parts: Buffer[] = [];
  await response.pipe((chunk) => parts.push(Buffer.from(chunk)));
  return Buffer.concat(parts);
}

async function httpFailure(promise: Promise<unknown>): Promise<HttpError> {
  const error = await promise.then(
    () => undefined,
    (e: unknown) => e,
  );
  expect(error).toBeInstanceOf(HttpError);
  return error as HttpError;
}

describe("http client: framing, failures and timeouts against real servers", () => {
  it("reads Content-Length bodies intact, also two large ones at once through the shared read buffer", async () => {
    const a = randomBytes(6 << 20);
    const b = randomBytes(5 << 20);
    const server = await httpServer((req, res) => {
      const body = req.url === "/a" ? a : b;
      res.writeHead(200, { "content-length": body.length });
      // in slices, so both downloads interleave on the loop
      let at = 0;
      const next = () => {
        while (at < body.length) {
          const slice = body.subarray(at, at + 100_000);
          at += slice.length;
          if (!res.write(slice)) return void res.once("drain", next);
        }
        res.end();
      };
      next();
    });
    try {
      const [ra, rb] = await Promise.all([httpGet(`${server.url}/a`, { env }), httpGet(`${server.url}/b`, { env })]);
      expect(ra.status).toBe(200);
      expect(ra.headers.get("content-length")).toBe(String(a.length));
      const ha = createHash("sha256");
      const hb = createHash("sha256");
      const [na, nb] = await Promise.all([ra.pipe((c) => ha.update(c)), rb.pipe((c) => hb.update(c))]);
      expect([na, nb]).toEqual([a.length, b.length]);
      expect(ha.digest("hex")).toBe(createHash("sha256").update(a).digest("hex"));
      expect(hb.digest("hex")).toBe(createHash("sha256").update(b).digest("hex"));
    } finally {
      await server.stop();
    }
  });

  it("decodes chunked bodies (chunk extensions and trailers included) and close-delimited ones", async () => {
    const body = randomBytes(300_000);
    const server = await rawServer((socket) => {
      socket.write("HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n");
      socket.write(`${(100_000).toString(16)};ext=1\r\n`);
      socket.write(body.subarray(0, 100_000));
      socket.write(`\r\n${(200_000).toString(16).toUpperCase()}\r\n`);
      socket.write(body.subarray(100_000));
      socket.end("\r\n0\r\nx-trailer: 1\r\n\r\n");
    });
    const close = await rawServer((socket) => socket.end(Buffer.concat([Buffer.from("HTTP/1.0 200 OK\r\n\r\n"), body])));
    try {
      expect((await collect(await httpGet(server.url, { env }))).equals(body)).toBe(true);
      expect((await collect(await httpGet(close.url, { env }))).equals(body)).toBe(true);
      // node:http's own chunked writer
      const node = await httpServer((_req, res) => {
        res.write(body.subarray(0, 7));
        res.end(body.subarray(7));
      });
      try {
        const response = await httpGet(node.url, { env });
        expect(response.headers.get("transfer-encoding")).toBe("chunked");
        expect((await collect(response)).equals(body)).toBe(true);
      } finally {
        await node.stop();
      }
    } finally {
      await Promise.all([server.stop(), close.stop()]);
    }
  });

  it("a body cut short is HttpTruncated (transient), for Content-Length and chunked framing", async () => {
    const short = await rawServer((socket) => socket.end(`HTTP/1.1 200 OK\r\ncontent-length: 1000\r\n\r\n${"x".repeat(500)}`));
    const chunked = await rawServer((socket) => socket.end(`HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n10\r\n0123456789`));
    const noHead = await rawServer((socket) => socket.end("HTTP/1.1 200 OK\r\ncontent-le"));
    try {
      const cut = await httpFailure((await httpGet(short.url, { env })).pipe(() => undefined));
      expect([cut.code, cut.transient]).toEqual(["HttpTruncated", true]);
      expect(cut.message).toContain("after 500 body bytes");
      expect((await httpFailure((await httpGet(chunked.url, { env })).pipe(() => undefined))).code).toBe("HttpTruncated");
      expect((await httpFailure(httpGet(noHead.url, { env }))).code).toBe("HttpTruncated");
    } finally {
      await Promise.all([short.stop(), chunked.stop(), noHead.stop()]);
    }
  });

  it("malformed answers are HttpProtocol (not retried); error statuses are answers, not failures", async () => {
    const garbage = await rawServer((socket) => socket.end("SSH-2.0-OpenSSH\r\n\r\n"));
    const badLength = await rawServer((socket) => socket.end("HTTP/1.1 200 OK\r\ncontent-length: 5, 6\r\n\r\nhello"));
    const badChunk = await rawServer((socket) => socket.end("HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\nzz\r\n"));
    const gzip = await rawServer((socket) => socket.end("HTTP/1.1 200 OK\r\ntransfer-encoding: gzip\r\n\r\n"));
    const status = await httpServer((_req, res) => res.writeHead(503, "Busy", { "content-type": "text/plain" }).end("later"));
    try {
      for (const server of [garbage, badLength, gzip]) {
        const error = await httpFailure(httpGet(server.url, { env }));
        expect([error.code, error.transient]).toEqual(["HttpProtocol", false]);
      }
      expect((await httpFailure((await httpGet(badChunk.url, { env })).pipe(() => undefined))).code).toBe("HttpProtocol");
      const response = await httpGet(status.url, { env });
      expect([response.status, response.statusText, response.ok]).toEqual([503, "Busy", false]);
      expect((await response.bytes(100)).toString()).toBe("later");
    } finally {
      await Promise.all([garbage.stop(), badLength.stop(), badChunk.stop(), gzip.stop(), status.stop()]);
    }
  });

  it("bytes(limit) refuses a larger body, declared or not", async () => {
    const declared = await httpServer((_req, res) => res.writeHead(200, { "content-length": 2000 }).end("y".repeat(2000)));
    const streamed = await httpServer((_req, res) => {
      res.write("z".repeat(1500));
      res.end("z".repeat(1500));
    });
    try {
      expect((await httpFailure((await httpGet(declared.url, { env })).bytes(1000))).code).toBe("HttpTooLarge");
      expect((await httpFailure((await httpGet(streamed.url, { env })).bytes(1000))).code).toBe("HttpTooLarge");
      expect((await (await httpGet(streamed.url, { env })).bytes(3000)).length).toBe(3000);
    } finally {
      await Promise.all([declared.stop(), streamed.stop()]);
    }
  });

  it("a server that never answers, or stalls mid-body, is an HttpTimeout; a refused port is HttpConnectFailed", async () => {
    const silent = await rawServer(() => undefined);
    const stall = await rawServer((socket) => socket.write("HTTP/1.1 200 OK\r\ncontent-length: 100\r\n\r\nabc"));
    try {
      const started = Date.now();
      const head = await httpFailure(httpGet(silent.url, { env, timeoutMs: 300 }));
      expect([head.code, head.transient]).toEqual(["HttpTimeout", true]);
      expect(Date.now() - started).toBeLessThan(5000);
      const response = await httpGet(stall.url, { env, timeoutMs: 300 });
      const body = await httpFailure(response.pipe(() => undefined));
      expect(body.code).toBe("HttpTimeout");
      expect(body.message).toContain("no data");
    } finally {
      await Promise.all([silent.stop(), stall.stop()]);
    }
    const closed = await listen(createNetServer());
    const port = closed.port;
    await new Promise<void>((resolve) => closed.close(() => resolve()));
    const refused = await httpFailure(httpGet(`http://127.0.0.1:${port}/`, { env }));
    expect([refused.code, refused.transient]).toEqual(["HttpConnectFailed", true]);
  });

  it("an abort signal stops a body mid-way with its reason", async () => {
    const stall = await rawServer((socket) => socket.write("HTTP/1.1 200 OK\r\ncontent-length: 100\r\n\r\nabc"));
    try {
      const controller = new AbortController();
      const response = await httpGet(stall.url, { env, signal: controller.signal });
      const body = response.pipe(() => controller.abort(new Error("stop here")));
      await expect(body).rejects.toThrow("stop here");
    } finally {
      await stall.stop();
    }
  });

  it("refuses header values that would split the request", async () => {
    const error = await httpFailure(httpGet("http://127.0.0.1:9/", { env, headers: { "x-a": "1\r\nx-b: 2" } }));
    expect(error.code).toBe("HttpInvalidRequest");
  });
});

describe("http client: redirects", () => {
  it("follows absolute and relative Locations (301/302/303/307/308), keeping Authorization only on the first origin", async () => {
    const storage = await httpServer((req, res) => res.writeHead(200, { "content-length": 6 }).end(req.url!.slice(1, 7).padEnd(6, ".")));
    const front = await httpServer((req, res) => {
      const [, code, rest] = /^\/(\d{3})(.*)$/.exec(req.url!) ?? [];
      if (req.url === "/local") return void res.writeHead(200).end("same-origin");
      if (rest === "/away") return void res.writeHead(Number(code), { location: `${storage.url}/stored` }).end();
      res.writeHead(Number(code), { location: "../local" }).end();
    });
    try {
      for (const code of [301, 302, 303, 307, 308]) {
        const away = await httpGet(`${front.url}/${code}/away`, { env, headers: { authorization: "Bearer secret" } });
        expect(away.status).toBe(200);
        expect(away.url.href).toBe(`${storage.url}/stored`);
        expect((await away.bytes(100)).toString()).toBe("stored");
        const here = await httpGet(`${front.url}/${code}/x/y`, { env, headers: { authorization: "Bearer secret" } });
        expect((await here.bytes(100)).toString()).toBe("same-origin");
      }
      expect(storage.seen.map((r) => r.authorization)).toEqual([undefined, undefined, undefined, undefined, undefined]);
      expect(storage.seen.every((r) => r.host === new URL(storage.url).host)).toBe(true);
      expect(front.seen.filter((r) => r.url === "/local").map((r) => r.authorization)).toEqual(Array(5).fill("Bearer secret"));
    } finally {
      await Promise.all([storage.stop(), front.stop()]);
    }
  });

  it("a redirect loop, a redirect without a usable Location, and an https → http redirect are refused", async () => {
    const loop = await httpServer((_req, res) => res.writeHead(302, { location: "/again" }).end());
    const bad = await httpServer((_req, res) => res.writeHead(302, { location: "http://[bad" }).end());
    try {
      const error = await httpFailure(httpGet(loop.url, { env, maxRedirects: 3 }));
      expect([error.code, error.transient]).toEqual(["HttpRedirect", false]);
      expect(loop.seen).toHaveLength(4);
      expect((await httpFailure(httpGet(bad.url, { env }))).code).toBe("HttpRedirect");
    } finally {
      await Promise.all([loop.stop(), bad.stop()]);
    }
  });
});

describe("http client: TLS", () => {
  let dir: string;
  let cert: Buffer;
  let server: Awaited<ReturnType<typeof listen<ReturnType<typeof createHttpsServer>>>>;
  let plain: Awaited<ReturnType<typeof httpServer>>;

  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), "iii-http-tls-"));
    execFileSync("openssl", [
      "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", join(dir, "key.pem"), "-out", join(dir, "cert.pem"),
      "-days", "1", "-subj", "/CN=localhost", "-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1",
    ], { stdio: "ignore" });
    cert = await readFile(join(dir, "cert.pem"));
    plain = await httpServer((_req, res) => res.end("plain"));
    server = await listen(
      createHttpsServer({ key: await readFile(join(dir, "key.pem")), cert }, (req, res) => {
        if (req.url === "/down") return void res.writeHead(302, { location: `${plain.url}/x` }).end();
        res.writeHead(200, { "content-length": 9 }).end("over tls!");
      }),
    );
  });
  afterAll(async () => {
    server?.closeAllConnections();
    await new Promise<void>((resolve) => (server ? server.close(() => resolve()) : resolve()));
    await plain?.stop();
    await rm(dir, { recursive: true, force: true });
  });

  it("a self-signed certificate is refused by the default store (HttpTls, not retried) and accepted with its CA", async () => {
    const error = await httpFailure(httpGet(`https://127.0.0.1:${server.port}/`, { env }));
    expect([error.code, error.transient]).toEqual(["HttpTls", false]);
    const response = await httpGet(`https://localhost:${server.port}/`, { env, ca: cert });
    expect((await response.bytes(100)).toString()).toBe("over tls!");
    const byIp = await httpGet(`https://127.0.0.1:${server.port}/`, { env, ca: cert });
    expect((await byIp.bytes(100)).toString()).toBe("over tls!");
  });

  it("plain HTTP spoken to a TLS port fails as a protocol or TLS error, never as success", async () => {
    const error = await httpFailure(httpGet(`http://127.0.0.1:${server.port}/`, { env, timeoutMs: 2000 }).then((r) => r.pipe(() => undefined)));
    expect(["HttpProtocol", "HttpTruncated"]).toContain(error.code);
  });

  it("refuses a redirect from https down to http", async () => {
    const error = await httpFailure(httpGet(`https://localhost:${server.port}/down`, { env, ca: cert }));
    expect(error.code).toBe("HttpRedirect");
    expect(error.message).toContain("from https to http:");
    expect(plain.seen).toHaveLength(0);
  });

  it("reaches a TLS server through a CONNECT proxy from the environment", async () => {
    const proxy = await connectProxy();
    try {
      const proxied = { HTTPS_PROXY: `http://user:pa%40ss@127.0.0.1:${proxy.port}` };
      const response = await httpGet(`https://localhost:${server.port}/`, { env: proxied, ca: cert });
      expect((await response.bytes(100)).toString()).toBe("over tls!");
      expect(proxy.requests).toEqual([`CONNECT localhost:${server.port} Basic ${Buffer.from("user:pa@ss").toString("base64")}`]);
    } finally {
      await proxy.stop();
    }
  });
});

describe("proxyFor", () => {
  it("picks the proxy by scheme and honours NO_PROXY hosts, domains, ports and *", () => {
    const proxy = { HTTP_PROXY: "http://p:1", HTTPS_PROXY: "http://s:2" };
    expect(proxyFor(new URL("http://a.example/"), proxy)?.host).toBe("p:1");
    expect(proxyFor(new URL("https://a.example/"), proxy)?.host).toBe("s:2");
    expect(proxyFor(new URL("https://a.example/"), { HTTP_PROXY: "p:3" })?.host).toBe("p:3");
    expect(proxyFor(new URL("http://a.example/"), { HTTPS_PROXY: "http://s:2" })).toBeUndefined();
    const no = (list: string, url: string) => proxyFor(new URL(url), { ...proxy, NO_PROXY: list });
    expect(no("a.example", "https://a.example/")).toBeUndefined();
    expect(no("a.example", "https://b.a.example/")).toBeDefined();
    expect(no(".example", "https://b.a.example/")).toBeUndefined();
    expect(no("*.example", "https://b.a.example/")).toBeUndefined();
    expect(no("a.example:8443", "https://a.example/")).toBeDefined();
    expect(no("a.example:8443", "https://a.example:8443/")).toBeUndefined();
    expect(no("x, 127.0.0.1", "http://127.0.0.1:5000/")).toBeUndefined();
    expect(no("*", "http://anything/")).toBeUndefined();
  });
});

describe.skipIf(missing !== undefined)("http client against the registry fixture", () => {
  let work: string;
  let registry: TestRegistry;

  beforeAll(async () => {
    work = await mkdtemp(join(tmpdir(), "iii-http-reg-"));
    registry = await startRegistry();
    const layout = join(work, "layout");
    await writeLayout(layout, "1", {
      config: { Cmd: ["/marker"] },
      layers: [{ entries: [{ name: "marker", content: "redirected" }] }, { entries: [{ name: "big", content: randomBytes(3 << 20) }] }],
    });
    await skopeoPush(`oci:${layout}:1`, registry, "test/app:1");
  });
  afterAll(async () => {
    await registry?.stop();
    await rm(work, { recursive: true, force: true });
  });

  it("a pull whose blobs are redirected to another host (as registries send them to storage) completes, verified", async () => {
    // The "registry" the pull talks to answers blob GETs with a 307 to the real registry (an absolute Location on
    // another origin) and forwards everything else.
    const front = await httpServer((req, res) => {
      if (/\/blobs\/sha256:/.test(req.url!)) return void res.writeHead(307, { location: `http://${registry.host}${req.url}` }).end();
      const upstream = httpRequest({ host: "127.0.0.1", port: Number(registry.host.split(":")[1]), path: req.url, headers: req.headers }, (answer) => {
        res.writeHead(answer.statusCode ?? 502, answer.headers);
        answer.pipe(res);
      });
      upstream.end();
    });
    try {
      const host = new URL(front.url).host;
      const blobsBefore = registry.blobGets();
      const image = await ensureImage(`${host}/test/app:1`, { home: join(work, "home"), insecureRegistries: [host], env });
      expect(image.cached).toBe(false);
      expect(await readFile(join(image.rootfs, "marker"), "utf8")).toBe("redirected");
      expect((await readFile(join(image.rootfs, "big"))).length).toBe(3 << 20);
      expect(registry.blobGets() - blobsBefore).toBe(3); // config + 2 layers, each fetched from the redirect target
      expect(front.seen.filter((r) => r.url.includes("/blobs/"))).toHaveLength(3);
    } finally {
      await front.stop();
    }
  });

  it("reads a blob straight from the registry, its bytes matching its digest", async () => {
    const manifest = await httpGet(`http://${registry.host}/v2/test/app/manifests/1`, {
      env,
      headers: { accept: "application/vnd.oci.image.manifest.v1+json" },
    });
    const document = (await manifest.json(1 << 20)) as { layers: { digest: string; size: number }[] };
    const layer = document.layers[1]!;
    const response = await httpGet(`http://${registry.host}/v2/test/app/blobs/${layer.digest}`, { env });
    const hash = createHash("sha256");
    expect(await response.pipe((chunk) => hash.update(chunk))).toBe(layer.size);
    expect(`sha256:${hash.digest("hex")}`).toBe(layer.digest);
  });
});

describe("http client: hostile peers during connect, CONNECT and trailers", () => {
  /** A TCP server that accepts and then says nothing (a stalled TLS handshake or CONNECT). */
  async function silentServer() {
    const sockets = new Set<Socket>();
    const server = await listen(
      createNetServer((socket) => {
        sockets.add(socket);
        socket.on("close", () => sockets.delete(socket));
        socket.on("error", () => undefined);
        socket.resume(); // reads (and drops) what arrives, so the client's close is seen
      }),
    );
    return { port: server.port, sockets, stop: () => closeAll(server, sockets) };
  }

  async function until(cond: () => boolean, ms: number): Promise<boolean> {
    const end = Date.now() + ms;
    while (!cond() && Date.now() < end) await new Promise((r) => setTimeout(r, 20));
    return cond();
  }

  it("a TLS handshake or a CONNECT that never completes is an HttpTimeout (no crash), and the socket is closed", async () => {
    const silent = await silentServer();
    try {
      const tls = await httpFailure(httpGet(`https://127.0.0.1:${silent.port}/`, { env, timeoutMs: 300 }));
      expect([tls.code, tls.transient]).toEqual(["HttpTimeout", true]);
      expect(await until(() => silent.sockets.size === 0, 2000)).toBe(true);
      const viaProxy = await httpFailure(httpGet("https://localhost:9/", { env: { HTTPS_PROXY: `http://127.0.0.1:${silent.port}` }, timeoutMs: 300 }));
      expect(viaProxy.code).toBe("HttpTimeout");
      expect(await until(() => silent.sockets.size === 0, 2000)).toBe(true);
      const controller = new AbortController();
      setTimeout(() => controller.abort(new Error("stopped while connecting")), 100);
      await expect(httpGet(`https://127.0.0.1:${silent.port}/`, { env, signal: controller.signal })).rejects.toThrow("stopped while connecting");
      expect(await until(() => silent.sockets.size === 0, 2000)).toBe(true);
    } finally {
      await silent.stop();
    }
  });

  it("an endless chunked trailer is refused as HttpProtocol once it passes the head limit", async () => {
    const endless = await rawServer((socket) => {
      socket.write("HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n");
      const line = `x-trailer: ${"a".repeat(1000)}\r\n`;
      const pump = () => {
        while (!socket.destroyed && socket.write(line));
        if (!socket.destroyed) socket.once("drain", pump);
      };
      pump();
    });
    try {
      const response = await httpGet(endless.url, { env, timeoutMs: 2000 });
      const error = await httpFailure(response.bytes(100));
      expect(error.code).toBe("HttpProtocol");
      expect(error.message).toContain("trailer");
    } finally {
      await endless.stop();
    }
  });

  it("CONNECT names an IPv6 literal with its port, the default one too", async () => {
    const requests: string[] = [];
    const proxy = await rawServer((socket) => socket.end("HTTP/1.1 403 Forbidden\r\ncontent-length: 0\r\n\r\n"));
    const recorder = await listen(
      createNetServer((socket) => {
        socket.on("error", () => undefined);
        socket.once("data", (d: Buffer) => {
          requests.push(d.toString("latin1").split("\r\n")[0]!);
          socket.end("HTTP/1.1 403 Forbidden\r\ncontent-length: 0\r\n\r\n");
        });
      }),
    );
    try {
      const viaProxy = { HTTPS_PROXY: `http://127.0.0.1:${recorder.port}` };
      expect((await httpFailure(httpGet("https://[2001:db8::1]:5000/v2/", { env: viaProxy }))).code).toBe("HttpProxy");
      expect((await httpFailure(httpGet("https://[2001:db8::1]/v2/", { env: viaProxy }))).code).toBe("HttpProxy");
      expect(requests).toEqual(["CONNECT [2001:db8::1]:5000 HTTP/1.1", "CONNECT [2001:db8::1]:443 HTTP/1.1"]);
    } finally {
      await proxy.stop();
      await new Promise<void>((resolve) => recorder.close(() => resolve()));
    }
  });

  it("through a proxy, an IP-literal registry's certificate is checked against that IP, not the proxy's name", async () => {
    const dir = await mkdtemp(join(tmpdir(), "iii-http-ipname-"));
    try {
      // A certificate for the name "localhost" only: valid for the proxy's name, not for 127.0.0.1.
      execFileSync("openssl", [
        "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", join(dir, "key.pem"), "-out", join(dir, "cert.pem"),
        "-days", "1", "-subj", "/CN=localhost", "-addext", "subjectAltName=DNS:localhost",
      ], { stdio: "ignore" });
      const cert = await readFile(join(dir, "cert.pem"));
      const tls = await listen(createHttpsServer({ key: await readFile(join(dir, "key.pem")), cert }, (_req, res) => res.end("impersonated")));
      const proxy = await connectProxy();
      try {
        const error = await httpFailure(httpGet(`https://127.0.0.1:${tls.port}/`, { env: { HTTPS_PROXY: `http://localhost:${proxy.port}` }, ca: cert }));
        expect(error.code).toBe("HttpTls");
        expect(proxy.requests).toEqual([`CONNECT 127.0.0.1:${tls.port} `]);
      } finally {
        await proxy.stop();
        tls.closeAllConnections();
        await new Promise<void>((resolve) => tls.close(() => resolve()));
      }
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });
});
