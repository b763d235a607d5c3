import { createHash } from "node:crypto";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { setTimeout as sleep } from "node:timers/promises";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { missingTools, startRegistry, type TestRegistry } from "../images/fixtures/registry.js";
import { runWorkerCli } from "../helpers.js";
import { exitWith, wat } from "./wat.js";

// WASM binaries as OCI artifacts on a real registry (Debian's docker-registry on loopback), pushed through the
// distribution API as wasm-to-oci / `wkg oci push` lay them out, and pulled by `iii-worker add`.
const missing = missingTools();
if (missing) console.warn(`[wasm] skipping OCI artifact tests: ${missing}`);

const sha = (b: Uint8Array) => `sha256:${createHash("sha256").update(b).digest("hex")}`;

async function pushBlob(registry: TestRegistry, repo: string, bytes: Uint8Array): Promise<string> {
  const digest = sha(bytes);
  const start = await fetch(`http://${registry.host}/v2/${repo}/blobs/uploads/`, { method: "POST" });
  expect(start.status).toBe(202);
  const location = new URL(start.headers.get("location")!, `http://${registry.host}`);
  location.searchParams.set("digest", digest);
  const put = await fetch(location, { method: "PUT", body: bytes, headers: { "content-type": "application/octet-stream" } });
  expect(put.status).toBe(201);
  return digest;
}

async function pushArtifact(registry: TestRegistry, repo: string, tag: string, layers: { mediaType: string; bytes: Uint8Array }[], configType = "application/vnd.wasm.config.v0+json") {
  const config = new TextEncoder().encode("{}");
  const manifest = {
    schemaVersion: 2,
    mediaType: "application/vnd.oci.image.manifest.v1+json",
    config: { mediaType: configType, digest: await pushBlob(registry, repo, config), size: config.length },
    layers: await Promise.all(layers.map(async (l) => ({ mediaType: l.mediaType, digest: await pushBlob(registry, repo, l.bytes), size: l.bytes.length }))),
  };
  const put = await fetch(`http://${registry.host}/v2/${repo}/manifests/${tag}`, {
    method: "PUT",
    body: JSON.stringify(manifest),
    headers: { "content-type": "application/vnd.oci.image.manifest.v1+json" },
  });
  expect(put.status).toBe(201);
}

describe.skipIf(missing !== undefined)("WASM OCI artifacts", () => {
  let registry: TestRegistry;
  let root: string;
  beforeAll(async () => {
    registry = await startRegistry();
    root = mkdtempSync(join(tmpdir(), "iii-wasm-oci-"));
  });
  afterAll(async () => {
    await registry?.stop();
    rmSync(root, { recursive: true, force: true });
  });
  const cli = (args: string[]) => runWorkerCli(args, { cwd: root, env: { III_HOME: join(root, "home"), III_INSECURE_REGISTRIES: registry.host } });

  it("an artifact with one application/wasm layer is pulled (digest verified, cached) and runs as a WASM worker; later adds use the cache", async () => {
    await pushArtifact(registry, "test/seven", "1", [{ mediaType: "application/wasm", bytes: await wat(exitWith(7, "from the registry\n")) }]);
    const added = await cli(["add", `${registry.host}/test/seven:1`]);
    expect(added.code, added.stderr).toBe(0);
    expect(added.stderr).toMatch(new RegExp(`WASM core module \\(WASI preview 1\\) from the OCI artifact ${registry.host}/test/seven:1@sha256:[0-9a-f]{64}`));
    expect((await cli(["start", "seven"])).code).toBe(0);
    let status = "";
    for (let i = 0; i < 200 && status !== "completed"; i++) {
      status = (JSON.parse((await cli(["list", "--json"])).stdout) as { name: string; status: string }[]).find((r) => r.name === "seven")!.status;
      await sleep(50);
    }
    expect((await cli(["list"])).stdout).toMatch(/seven\s+wasm:\S+\s+completed \(exit 7\)/);
    expect((await cli(["logs", "seven"])).stdout).toBe("from the registry\n");
    // the same reference again, offline: from the cache, no blob fetched
    const blobGets = registry.blobGets();
    const again = await cli(["add", `${registry.host}/test/seven:1`, "--name", "again", "--no-pull"]);
    expect(again.code, again.stderr).toBe(0);
    expect(again.stderr).toMatch(/from the OCI artifact/);
    expect(registry.blobGets()).toBe(blobGets);
  });

  it("refuses an artifact with a wasm config but not exactly one wasm layer, naming what it holds, and records nothing", async () => {
    const bytes = await wat(exitWith(0, ""));
    await pushArtifact(registry, "test/two", "1", [
      { mediaType: "application/wasm", bytes },
      { mediaType: "application/wasm", bytes: new Uint8Array([...bytes, 0]) },
    ]);
    const added = await cli(["add", `${registry.host}/test/two:1`, "--name", "two"]);
    expect(added.code).not.toBe(0);
    expect(added.stderr).toMatch(/a WASM artifact must have exactly one wasm layer \(it has application\/wasm, application\/wasm\)/);
    expect(added.stderr.trim().split("\n")).toHaveLength(1);
    expect((await cli(["list", "--json"])).stdout).not.toMatch(/"two"/);
  });

  it("a wasm layer (here the component media type) that is not WebAssembly is refused by kind detection, and nothing is recorded", async () => {
    await pushArtifact(registry, "test/notwasm", "1", [{ mediaType: "application/vnd.bytecodealliance.wasm.component.layer.v0+wasm", bytes: new TextEncoder().encode("#!/bin/sh\necho hi\n") }]);
    const added = await cli(["add", `${registry.host}/test/notwasm:1`, "--name", "notwasm"]);
    expect(added.code).not.toBe(0);
    expect(added.stderr).toMatch(/not a WebAssembly binary/);
    expect((await cli(["list", "--json"])).stdout).not.toMatch(/"notwasm"/);
  });
});
