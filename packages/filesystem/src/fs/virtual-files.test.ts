import { describe, expect, it } from "vitest";
import { isAllowedVirtualPath, VirtualFiles } from "./virtual-files.js";

describe("virtual files", () => {
  it("only /init.krun and paths below /.iii/ may be injected", () => {
    for (const p of ["/init.krun", "/.iii/env.json", "/.iii/a/b"]) expect(isAllowedVirtualPath(p), p).toBe(true);
    for (const p of ["/etc/passwd", "/.iii", "/.iii/", "/init.krun/x", "/.iii/../etc", "init.krun", "/.iiix/a", "/.iii//a"]) {
      expect(isAllowedVirtualPath(p), p).toBe(false);
    }
  });

  it("builds the directory tree, 0755 attributes and root names", () => {
    const v = new VirtualFiles({ "/init.krun": { content: "abc" }, "/.iii/a/b": { content: new Uint8Array(5) }, "/.iii/c": { content: "" } });
    try {
      expect([...v.rootNames].sort()).toEqual([".iii", "init.krun"]);
      expect(v.childrenOf("/.iii").sort()).toEqual(["a", "c"]);
      const init = v.get("/init.krun");
      expect(init && v.attr(init)).toMatchObject({ mode: 0o100755, size: 3, uid: 0, nlink: 1 });
      const dir = v.get("/.iii/a");
      expect(dir && v.attr(dir).mode).toBe(0o040755);
      expect(v.covers("/.iii/zzz")).toBe(true);
      expect(v.covers("/init.krun")).toBe(true);
      expect(v.covers("/etc")).toBe(false);
    } finally {
      v.close();
    }
  });

  it("refuses a path used both as file and directory", () => {
    expect(() => new VirtualFiles({ "/.iii/a": { content: "x" }, "/.iii/a/b": { content: "y" } })).toThrow(expect.objectContaining({ code: "VirtualFileInvalid" }));
  });
});
