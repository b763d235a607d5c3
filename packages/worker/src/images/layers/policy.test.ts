import { describe, expect, it } from "vitest";
import { DEFAULT_LAYER_LIMITS, LayerBudget, MAX_NON_FILE_BODY_BYTES, planEntry, splitEntryPath, TAR_BYTES_PER_ENTRY, TAR_BYTES_PER_LAYER } from "./policy.js";

const options = { limits: DEFAULT_LAYER_LIMITS, keepSetuid: false, label: "layer 1/1" };

describe("layer policy", () => {
  it("normalises paths and refuses absolute paths and ..", () => {
    expect(splitEntryPath("./a//b/./c/", "l", 10)).toEqual(["a", "b", "c"]);
    expect(() => splitEntryPath("/etc/passwd", "layer 2/3", 10)).toThrow(/layer 2\/3: entry "\/etc\/passwd" rejected: absolute path/);
    expect(() => splitEntryPath("a/../../b", "l", 10)).toThrow(/path traversal/);
    expect(() => splitEntryPath("a/b/c", "l", 2)).toThrow(/path depth exceeds the limit of 2/);
  });

  it("classifies whiteouts and opaque markers", () => {
    expect(planEntry({ name: "usr/.wh.lib", type: "file" }, options)).toMatchObject({ kind: "whiteout", components: ["usr", "lib"] });
    expect(planEntry({ name: "usr/.wh..wh..opq", type: "file" }, options)).toMatchObject({ kind: "opaque", components: ["usr"] });
    expect(planEntry({ name: ".wh..wh..opq", type: "file" }, options)).toMatchObject({ kind: "opaque", components: [] });
    expect(() => planEntry({ name: "a/.wh...", type: "file" }, options)).toThrow(/malformed whiteout/);
  });

  it("strips setuid/setgid unless asked to keep them", () => {
    expect(planEntry({ name: "bin/su", type: "file", mode: 0o4755 }, options).mode).toBe(0o755);
    expect(planEntry({ name: "d", type: "directory", mode: 0o3775 }, options).mode).toBe(0o1775);
    expect(planEntry({ name: "bin/su", type: "file", mode: 0o4755 }, { ...options, keepSetuid: true }).mode).toBe(0o4755);
  });

  it("refuses hardlinks leaving the layer, big files, sparse files and unknown types; skips devices", () => {
    expect(() => planEntry({ name: "x", type: "link", linkname: "/etc/shadow" }, options)).toThrow(/hardlink to "\/etc\/shadow" outside/);
    expect(() => planEntry({ name: "x", type: "link", linkname: "../../etc/shadow" }, options)).toThrow(/outside the layer/);
    expect(() => planEntry({ name: "big", type: "file", size: 6 * 1024 ** 3 }, options)).toThrow(/per-file limit/);
    expect(() => planEntry({ name: "sp", type: "file", size: 0, pax: { "GNU.sparse.realsize": String(10 * 1024 ** 3) } }, options)).toThrow(
      /sparse file of 10737418240 bytes exceeds the per-file limit/,
    );
    expect(() => planEntry({ name: "sp", type: "file", size: 0, pax: { "GNU.sparse.major": "1" } }, options)).toThrow(/sparse files are not supported/);
    expect(() => planEntry({ name: "x", type: null }, options)).toThrow(/unsupported tar entry type/);
    expect(planEntry({ name: "dev/null", type: "character-device" }, options)).toMatchObject({ kind: "skip" });
  });

  it("reads PAX uid/gid (ids above the ustar range)", () => {
    expect(planEntry({ name: "f", type: "file", uid: 0, pax: { uid: "3000000", gid: "3000001" } }, options)).toMatchObject({ uid: 3000000, gid: 3000001 });
  });

  it("counts entries per layer and bytes per image", () => {
    const budget = new LayerBudget({ ...DEFAULT_LAYER_LIMITS, maxEntries: 2, maxTotalBytes: 10 });
    const file = planEntry({ name: "f", type: "file", size: 6 }, options);
    budget.startLayer();
    budget.account(file, "layer 1/2");
    expect(() => budget.account(file, "layer 1/2")).toThrow(/exceeds the total size limit of 10 bytes/);
    budget.startLayer();
    const dir = planEntry({ name: "d", type: "directory" }, options);
    budget.account(dir, "layer 2/2");
    budget.account(dir, "layer 2/2");
    expect(() => budget.account(dir, "layer 2/2")).toThrow(/layer 2\/2: .* more than 2 entries/);
  });

  it("counts the bodies of non-file entries, refuses large ones, and bounds the uncompressed tar of an image", () => {
    const budget = new LayerBudget({ ...DEFAULT_LAYER_LIMITS, maxTotalBytes: 100 });
    budget.startLayer();
    const link = planEntry({ name: "l", type: "symlink", linkname: "t", size: 60 }, options);
    expect(link).toMatchObject({ kind: "symlink", bodyBytes: 60 });
    budget.account(link, "layer 1/1");
    expect(() => budget.account(link, "layer 1/1")).toThrow(/entry "l" rejected: the image exceeds the total size limit of 100 bytes/);
    expect(planEntry({ name: "d", type: "directory", size: 1 << 30 }, options)).toMatchObject({ bodyBytes: 0 });
    for (const type of ["symlink", "link", "character-device", "fifo"]) {
      expect(() => planEntry({ name: "x", type, linkname: "t", size: MAX_NON_FILE_BODY_BYTES + 1 }, options)).toThrow(/entry "x" rejected: a .* entry with a body of 65537 bytes/);
    }
    expect(() => planEntry({ name: ".wh.x", type: "file", size: MAX_NON_FILE_BODY_BYTES + 1 }, options)).not.toThrow();

    const archive = new LayerBudget({ ...DEFAULT_LAYER_LIMITS, maxTotalBytes: 1000 });
    archive.startLayer();
    archive.account(planEntry({ name: "f", type: "file", size: 10 }, options), "layer 1/1");
    const allowed = 1000 + TAR_BYTES_PER_ENTRY + TAR_BYTES_PER_LAYER;
    archive.archive(allowed, "layer 1/1");
    expect(() => archive.archive(1, "layer 1/1")).toThrow(/^layer 1\/1: rejected: the uncompressed layers exceed the image's size limit of 1000 bytes/);
  });
});
