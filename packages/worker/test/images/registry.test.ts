import { createHash } from "node:crypto";
import { mkdir, mkdtemp, readdir, readFile, rm, stat, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { ensureImage, listImages, loginRegistry, pruneImages } from "../../src/images/index.js";
import { pullWasmArtifact } from "../../src/images/wasm-artifact.js";
import { LAYERED } from "./fixtures/images.js";
import { writeLayout, writeMultiArchLayout, type ImageSpec } from "./fixtures/oci-writer.js";
import { missingTools, skopeoPush, startRegistry, type TestRegistry } from "./fixtures/registry.js";
import { describeTree } from "./fixtures/tree.js";

const missing = missingTools();
if (missing) console.warn(`[images] skipping registry tests: ${missing}`);

const gzipOnly = (spec: ImageSpec): ImageSpec => ({ ...spec, layers: spec.layers.map((l) => ({ ...l, compression: "gzip" as const })) });
const single = (marker: string): ImageSpec => ({
  config: { Cmd: ["/marker"] },
  layers: [{ entries: [{ name: "marker", content: marker }, { name: "etc/passwd", content: "root:x:0:0::/root:/bin/sh\n" }] }],
});

describe.skipIf(missing !== undefined)("pulling from a real registry (docker-registry + skopeo)", () => {
  let work: string;
  let plain: TestRegistry;
  let basic: TestRegistry;
  let token: TestRegistry;
  const layouts: Record<string, string> = {};

  beforeAll(async () => {
    work = await mkdtemp(join(tmpdir(), "iii-img-reg-"));
    [plain, basic, token] = await Promise.all([
      startRegistry(),
      startRegistry({ kind: "htpasswd", username: "alice", password: "s3cret" }),
      startRegistry({ kind: "token", username: "bob", password: "t0ken-pass" }),
    ]);
    layouts.app = join(work, "app");
    await writeLayout(layouts.app, "1", gzipOnly(LAYERED));
    layouts.a = join(work, "a");
    await writeLayout(layouts.a, "latest", single("A"));
    layouts.b = join(work, "b");
    await writeLayout(layouts.b, "latest", single("B"));
    layouts.multi = join(work, "multi");
    await writeMultiArchLayout(layouts.multi, "1", [
      { platform: { os: "linux", architecture: "arm64", variant: "v8" }, spec: single("arm64") },
      { platform: { os: "linux", architecture: "amd64" }, spec: single("amd64") },
    ]);
    layouts.noamd = join(work, "noamd");
    await writeMultiArchLayout(layouts.noamd, "1", [
      { platform: { os: "linux", architecture: "arm64", variant: "v8" }, spec: single("arm64") },
      { platform: { os: "linux", architecture: "s390x" }, spec: single("s390x") },
    ]);
    await skopeoPush(`oci:${layouts.app}:1`, plain, "test/app:1");
    await skopeoPush(`oci:${layouts.multi}:1`, plain, "test/multi:1", { all: true });
    await skopeoPush(`oci:${layouts.noamd}:1`, plain, "test/noamd:1", { all: true });
    await skopeoPush(`oci:${layouts.app}:1`, basic, "test/app:1", { creds: "alice:s3cret" });
    await skopeoPush(`oci:${layouts.app}:1`, token, "test/app:1", { creds: "bob:t0ken-pass" });
  });

  afterAll(async () => {
    await Promise.all([plain?.stop(), basic?.stop(), token?.stop()]);
    await rm(work, { recursive: true, force: true });
  });

  const freshHome = async (name: string) => {
    const home = join(work, `home-${name}`);
    await mkdir(home, { recursive: true });
    return home;
  };

  it("pulls a multi-layer image over plain HTTP when the registry is named insecure, equal to the local unpack", async () => {
    const home = await freshHome("plain");
    const ref = `${plain.host}/test/app:1`;
    await expect(ensureImage(ref, { home, pull: "always" })).rejects.toThrow(/TLS handshake with https:\/\/127.0.0.1:\d+ failed .*--insecure-registry/);
    const before = plain.blobGets();
    const image = await ensureImage(ref, { home, insecureRegistries: [plain.host], progress: true });
    expect(image.cached).toBe(false);
    expect(plain.blobGets() - before).toBe(4); // config + 3 layers
    const local = await ensureImage(`oci:${layouts.app}:1`, { home: await freshHome("plain-local") });
    expect(image.digest).toBe(local.digest);
    expect(await describeTree(image.rootfs)).toEqual(await describeTree(local.rootfs));
    expect(image.config).toMatchObject({ entrypoint: ["/bin/tool"], cmd: ["--serve"], workingDir: "/srv", user: { uid: 1000, gid: 1001 } });
    expect(image.manifest?.name).toBe("demo");

    // the same pull again downloads nothing, with --pull=missing (no request at all) and --pull=always (manifest only)
    const gets = plain.blobGets();
    const log = plain.log().length;
    const again = await ensureImage(ref, { home, insecureRegistries: [plain.host] });
    expect(again).toMatchObject({ digest: image.digest, cached: true });
    expect(plain.log().length).toBe(log);
    const always = await ensureImage(ref, { home, insecureRegistries: [plain.host], pull: "always" });
    expect(always).toMatchObject({ digest: image.digest, cached: true });
    expect(plain.blobGets()).toBe(gets);
    expect(plain.log().slice(log)).toMatch(/GET \/v2\/test\/app\/manifests\/1/);
  });

  it("`add`'s WASM-artifact check and the image pull that follows share one manifest GET", async () => {
    const home = await freshHome("wasm-check");
    const manifestGets = (from: number) => (plain.log().slice(from).match(/"GET \/v2\/test\/app\/manifests\/1 HTTP\/1\.1" 200/g) ?? []).length;
    const log = plain.log().length;
    const ref = `${plain.host}/test/app:1`;
    expect(await pullWasmArtifact(ref, { home, env: {}, pull: "missing", insecureRegistries: [plain.host] })).toBeUndefined();
    const image = await ensureImage(ref, { home, insecureRegistries: [plain.host] });
    expect(image.cached).toBe(false);
    expect(manifestGets(log)).toBe(1);
    // a later pull=always asks the registry again (the handed-off document is used once)
    await ensureImage(ref, { home, insecureRegistries: [plain.host], pull: "always" });
    expect(manifestGets(log)).toBe(2);
  });

  it("picks up a retagged :latest with pull=always, and prune removes only unreferenced images", async () => {
    const home = await freshHome("retag");
    const opts = { home, insecureRegistries: [plain.host] };
    await skopeoPush(`oci:${layouts.a}:latest`, plain, "test/retag:latest");
    const a = await ensureImage(`${plain.host}/test/retag`, opts);
    await skopeoPush(`oci:${layouts.b}:latest`, plain, "test/retag:latest");
    const stale = await ensureImage(`${plain.host}/test/retag:latest`, opts);
    expect(stale.digest).toBe(a.digest);
    const b = await ensureImage(`${plain.host}/test/retag:latest`, { ...opts, pull: "always" });
    expect(b.digest).not.toBe(a.digest);
    expect((await stat(join(b.rootfs, "marker"))).size).toBe(1);
    // the insecure registry named in III_HOME/registries.json instead of the option
    await writeFile(join(home, "registries.json"), JSON.stringify({ insecureRegistries: [plain.host] }));
    const app = await ensureImage(`${plain.host}/test/app:1`, { home });

    const listed = await listImages({ home, inUse: { web: `${plain.host}/test/retag:latest`, api: `${plain.host}/test/app:1` } });
    expect(listed.map((i) => i.digest).sort()).toEqual([a.digest, b.digest, app.digest].sort());
    expect(listed.find((i) => i.digest === b.digest)?.usedBy).toEqual(["web"]);
    expect(listed.find((i) => i.digest === a.digest)?.references).toEqual([]);

    const result = await pruneImages([`${plain.host}/test/retag:latest`, app.digest], { home });
    expect(result.removed.map((r) => r.digest)).toEqual([a.digest]);
    expect(result.removedBlobs).toBe(1);
    const left = (await readdir(join(home, "images", "sha256"))).sort();
    expect(left).toEqual([b.digest.slice(7), app.digest.slice(7)].sort());
    expect((await ensureImage(`${plain.host}/test/retag:latest`, { ...opts, pull: "never" })).digest).toBe(b.digest);
  });

  it("resolves a multi-arch index to linux/amd64, and lists the platforms of an index without it", async () => {
    const home = await freshHome("multi");
    const image = await ensureImage(`${plain.host}/test/multi:1`, { home, insecureRegistries: [plain.host] });
    expect(await readFile(join(image.rootfs, "marker"), "utf8")).toBe("amd64");
    // pinned by the index digest: cached under the amd64 manifest, found again without the registry
    const indexDigest = `sha256:${createHash("sha256").update(await readFile(join(layouts.multi!, "blobs", "sha256", JSON.parse(await readFile(join(layouts.multi!, "index.json"), "utf8")).manifests[0].digest.slice(7)))).digest("hex")}`;
    const pinned = await ensureImage(`${plain.host}/test/multi@${indexDigest}`, { home, insecureRegistries: [plain.host] });
    expect(pinned.digest).toBe(image.digest);
    const log = plain.log().length;
    expect((await ensureImage(`${plain.host}/test/multi@${indexDigest}`, { home, pull: "never" })).digest).toBe(image.digest);
    expect(plain.log().length).toBe(log);
    await expect(ensureImage(`${plain.host}/test/noamd:1`, { home, insecureRegistries: [plain.host] })).rejects.toThrow(
      `no linux/amd64 image in the index; available platforms: linux/arm64/v8, linux/s390x`,
    );
  });

  it("htpasswd basic auth: docker config credentials pull, wrong ones give a 401 naming the registry", async () => {
    const home = await freshHome("basic");
    const ref = `${basic.host}/test/app:1`;
    await expect(ensureImage(ref, { home, insecureRegistries: [basic.host] })).rejects.toThrow(
      `registry ${basic.host}: 401 Unauthorized: the registry requires credentials`,
    );
    const dockerConfig = join(work, "docker-basic");
    await mkdir(dockerConfig, { recursive: true });
    const auth = (u: string, p: string) => Buffer.from(`${u}:${p}`).toString("base64");
    await writeFile(join(dockerConfig, "config.json"), JSON.stringify({ auths: { [basic.host]: { auth: auth("alice", "wrong") } } }));
    const env = { ...process.env, DOCKER_CONFIG: dockerConfig };
    await expect(ensureImage(ref, { home, insecureRegistries: [basic.host], env })).rejects.toThrow(
      new RegExp(`registry ${basic.host.replace(/\./g, "\\.")}: 401 Unauthorized: credentials for user "alice" \\(from ${dockerConfig}/config.json\\) were rejected`),
    );
    await writeFile(join(dockerConfig, "config.json"), JSON.stringify({ auths: { [`https://${basic.host}`]: { auth: auth("alice", "s3cret") } } }));
    const image = await ensureImage(ref, { home, insecureRegistries: [basic.host], env });
    expect(image.config.user.uid).toBe(1000);
  });

  it("bearer token flow through a token service; `iii worker login` stores credentials with mode 0600", async () => {
    const home = await freshHome("token");
    const ref = `${token.host}/test/app:1`;
    const env = { ...process.env, DOCKER_CONFIG: join(work, "no-docker-config") };
    await expect(ensureImage(ref, { home, insecureRegistries: [token.host], env })).rejects.toThrow(
      new RegExp(`registry ${token.host.replace(/\./g, "\\.")}: 401 Unauthorized from token service`),
    );
    await expect(loginRegistry(token.host, { username: "bob", password: "nope", home, insecure: true })).rejects.toThrow(
      `registry ${token.host}: 401 Unauthorized from token service`,
    );
    await expect(stat(join(home, "auth.json"))).rejects.toThrow();
    await loginRegistry(token.host, { username: "bob", password: "t0ken-pass", home, insecure: true });
    expect((await stat(join(home, "auth.json"))).mode & 0o777).toBe(0o600);
    const requests = token.tokenRequests();
    const image = await ensureImage(ref, { home, insecureRegistries: [token.host], env });
    expect(token.tokenRequests()).toBeGreaterThan(requests);
    expect(image.config.workingDir).toBe("/srv");
  });
});
