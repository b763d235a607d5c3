import { describe, expect, it } from "vitest";
import { MediaType, parseManifestDocument, selectPlatform, type ImageIndex } from "./manifest.js";

const d = (arch: string, variant?: string) => ({
  mediaType: MediaType.OciManifest,
  digest: `sha256:${arch.padEnd(64, "0").replace(/[^a-f0-9]/g, "a")}`,
  size: 1,
  platform: { os: "linux", architecture: arch, ...(variant ? { variant } : {}) },
});

describe("manifests and platforms", () => {
  it("chooses linux/<arch> and lists the platforms when it is missing", () => {
    const index: ImageIndex = { kind: "index", mediaType: MediaType.OciIndex, manifests: [d("arm64", "v8"), d("amd64"), d("s390x")] };
    expect(selectPlatform(index, "img", "amd64").platform?.architecture).toBe("amd64");
    const noAmd: ImageIndex = { ...index, manifests: [d("arm64", "v8"), d("s390x")] };
    expect(() => selectPlatform(noAmd, "img", "amd64")).toThrow("img: no linux/amd64 image in the index; available platforms: linux/arm64/v8, linux/s390x");
  });

  it("rejects digests that could become paths and unknown layer types", () => {
    const bad = Buffer.from(JSON.stringify({ schemaVersion: 2, config: { mediaType: MediaType.OciConfig, digest: "sha256:../../x", size: 1 }, layers: [] }));
    expect(() => parseManifestDocument(bad, "m")).toThrow(/not sha256:<64 lowercase hex>/);
    const layer = { mediaType: "application/x-weird", digest: `sha256:${"a".repeat(64)}`, size: 1 };
    const weird = Buffer.from(JSON.stringify({ schemaVersion: 2, config: { ...layer, mediaType: MediaType.OciConfig }, layers: [layer] }));
    expect(() => parseManifestDocument(weird, "m")).toThrow(/unsupported media type application\/x-weird/);
  });
});
