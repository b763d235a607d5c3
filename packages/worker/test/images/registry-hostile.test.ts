import { createServer, type IncomingMessage, type Server, type ServerResponse } from "node:http";
import { afterEach, describe, expect, it } from "vitest";
import { lookup } from "node:dns/promises";
import { hostname, networkInterfaces } from "node:os";
import { RegistryClient } from "../../src/images/registry/client.js";
import { isLocalHostname } from "../../src/images/registry/http.js";
import { sha256Digest } from "../../src/images/digest.js";

/**
 * A hostile registry (and the hosts it names) on 127.0.0.1: what does the client send where? Every server
 * records the Authorization headers it was sent.
 */
interface Hostile {
  host: string;
  origin: string;
  seen: Array<{ path: string; authorization?: string }>;
  server: Server;
}

const servers: Server[] = [];

async function hostile(handler: (req: IncomingMessage, res: ServerResponse, self: Hostile) => void, address = "127.0.0.1"): Promise<Hostile> {
  const server = createServer();
  servers.push(server);
  await new Promise<void>((resolve) => server.listen(0, address, resolve));
  const port = (server.address() as { port: number }).port;
  const self: Hostile = { host: `${address}:${port}`, origin: `http://${address}:${port}`, seen: [], server };
  server.on("request", (req, res) => {
    self.seen.push({ path: req.url ?? "", ...(req.headers.authorization ? { authorization: req.headers.authorization } : {}) });
    handler(req, res, self);
  });
  return self;
}

afterEach(async () => {
  for (const server of servers.splice(0)) {
    server.closeAllConnections();
    await new Promise((resolve) => server.close(resolve));
  }
});

/** An IPv4 address of this machine's own interfaces that is not loopback: a "remote" registry that stays local. */
const interfaceAddress = Object.values(networkInterfaces())
  .flat()
  .find((a) => a && a.family === "IPv4" && !a.internal)?.address;

/** Whether this machine's own host name resolves to a loopback address (the attack below needs one that does). */
const ownNameLoopback = await lookup(hostname()).then(
  (r) => isLocalHostname(r.address),
  () => false,
);
if (!ownNameLoopback) console.warn(`SKIP registry-hostile name-resolves-to-loopback tests: ${hostname()} does not resolve to a loopback address here`);
if (!interfaceAddress) console.warn("SKIP registry-hostile remote-registry tests: this machine has no non-loopback IPv4 address");

const CREDENTIALS = { username: "alice", password: "registry-s3cret", source: "test" };
const BASIC = `Basic ${Buffer.from("alice:registry-s3cret").toString("base64")}`;
const blob = Buffer.from("layer bytes");
const descriptor = { mediaType: "application/vnd.oci.image.config.v1+json", digest: sha256Digest(blob), size: blob.length };

function client(registry: Hostile, extra: string[] = []): RegistryClient {
  return new RegistryClient(registry.host, { insecureRegistries: [registry.host, ...extra], credentials: async () => CREDENTIALS, attempts: 1, backoffMs: 1 });
}

describe("hostile registry: where credentials go", () => {
  it("a 401 challenge from the host a blob redirect went to is not the registry's: no credentials are sent to the realm it names", async () => {
    // The storage host the registry redirects blobs to answers 401 with its own bearer challenge.
    const storage = await hostile((req, res, self) => {
      if (req.url?.startsWith("/token")) {
        res.writeHead(200, { "content-type": "application/json" }).end(JSON.stringify({ token: "storage-token" }));
        return;
      }
      res.writeHead(401, { "www-authenticate": `Bearer realm="${self.origin}/token",service="x"` }).end();
    });
    const registry = await hostile((req, res) => {
      res.writeHead(307, { location: `${storage.origin}/blob` }).end();
    });
    await expect(client(registry, [storage.host]).getBlobBytes("team/app", descriptor)).rejects.toThrow(/401/);
    expect(storage.seen.filter((s) => s.authorization)).toEqual([]);
  });

  it.skipIf(!interfaceAddress)("a registry on another host may not aim its token realm at a loopback service", async () => {
    const local = await hostile((_req, res) => res.writeHead(200, { "content-type": "application/json" }).end(JSON.stringify({ token: "loopback-secret" })));
    const registry = await hostile((req, res) => {
      if (req.headers.authorization) res.writeHead(200).end(blob);
      else res.writeHead(401, { "www-authenticate": `Bearer realm="${local.origin}/token",service="x"` }).end();
    }, interfaceAddress);
    await expect(client(registry).getBlobBytes("team/app", descriptor)).rejects.toThrow(/refusing token realm http:\/\/127\.0\.0\.1:\d+: a registry on another host may not send us to a loopback or link-local address/);
    expect(local.seen).toEqual([]);
    expect(registry.seen.some((s) => s.authorization?.includes("loopback-secret"))).toBe(false);
  });

  it.skipIf(!interfaceAddress)("a registry on another host may not redirect a download to a loopback service", async () => {
    const local = await hostile((_req, res) => res.writeHead(200).end("internal"));
    const registry = await hostile((_req, res) => res.writeHead(302, { location: `${local.origin}/admin` }).end(), interfaceAddress);
    await expect(client(registry).getBlobBytes("team/app", descriptor)).rejects.toThrow(/refusing a redirect to http:\/\/127\.0\.0\.1:\d+/);
    expect(local.seen).toEqual([]);
  });

  // This machine's own name resolves to 127.0.0.1 on Debian and many others (/etc/hosts): a redirect to it passes
  // a check of the URL's spelling.
  it.skipIf(!interfaceAddress || !ownNameLoopback)("a registry on another host may not redirect a download, or aim its token realm, at a name that resolves to loopback", async () => {
    const local = await hostile((_req, res) => res.writeHead(200, { "content-type": "application/json" }).end(JSON.stringify({ token: "loopback-secret" })));
    const port = (local.server.address() as { port: number }).port;
    const byName = `http://${hostname()}:${port}`;
    const redirecting = await hostile((_req, res) => res.writeHead(302, { location: `${byName}/admin` }).end(), interfaceAddress);
    await expect(client(redirecting, [`${hostname()}:${port}`]).getBlobBytes("team/app", descriptor)).rejects.toThrow(
      new RegExp(`${byName.replace(/[.]/g, "\\.")}: ${hostname()} resolves to 127\\.0\\.0\\.1: a registry on another host may not send us to a loopback or link-local address`),
    );
    const realm = await hostile((req, res) => {
      if (req.headers.authorization) res.writeHead(200).end(blob);
      else res.writeHead(401, { "www-authenticate": `Bearer realm="${byName}/token",service="x"` }).end();
    }, interfaceAddress);
    await expect(client(realm, [`${hostname()}:${port}`]).getBlobBytes("team/app", descriptor)).rejects.toThrow(/resolves to 127\.0\.0\.1: a registry on another host may not/);
    expect(local.seen).toEqual([]);
  });

  it.skipIf(!ownNameLoopback)("a registry whose own name resolves to loopback (a mirror in /etc/hosts) is local, and may use loopback services", async () => {
    const tokens = await hostile((_req, res) => res.writeHead(200, { "content-type": "application/json" }).end(JSON.stringify({ token: "t0k" })));
    const registry = await hostile((req, res) => {
      if (req.headers.authorization === "Bearer t0k") res.writeHead(200).end(blob);
      else res.writeHead(401, { "www-authenticate": `Bearer realm="${tokens.origin}/token",service="x"` }).end();
    });
    const port = (registry.server.address() as { port: number }).port;
    const byName = { ...registry, host: `${hostname()}:${port}` };
    expect(await client(byName).getBlobBytes("team/app", descriptor)).toEqual(blob);
    expect(tokens.seen).toHaveLength(1);
  });

  it("a registry on loopback keeps its loopback token service (the test registries, a local mirror)", async () => {
    const tokens = await hostile((_req, res) => res.writeHead(200, { "content-type": "application/json" }).end(JSON.stringify({ token: "t0k" })));
    const registry = await hostile((req, res) => {
      if (req.headers.authorization === "Bearer t0k") res.writeHead(200).end(blob);
      else res.writeHead(401, { "www-authenticate": `Bearer realm="${tokens.origin}/token",service="x"` }).end();
    });
    expect(await client(registry).getBlobBytes("team/app", descriptor)).toEqual(blob);
    expect(tokens.seen).toEqual([{ path: "/token?service=x&scope=repository%3Ateam%2Fapp%3Apull", authorization: BASIC }]);
  });
});

describe("isLocalHostname", () => {
  it("names loopback, unspecified and link-local hosts in every spelling a URL normalises to", () => {
    for (const url of ["http://localhost/", "http://a.localhost./", "http://127.0.0.1/", "http://127.1/", "http://2130706433/", "http://0x7f000001/", "http://0.0.0.0/", "http://169.254.169.254/", "http://[::1]/", "http://[::]/", "http://[fe80::1]/", "http://[::ffff:127.0.0.1]/", "http://[::ffff:169.254.169.254]/"]) {
      expect([url, isLocalHostname(new URL(url).hostname)]).toEqual([url, true]);
    }
    for (const url of ["http://registry.example/", "http://192.0.2.2/", "http://10.0.0.1/", "http://[fd00::2]/", "http://[2001:db8::1]/", "http://localhost.example/"]) {
      expect([url, isLocalHostname(new URL(url).hostname)]).toEqual([url, false]);
    }
  });
});
