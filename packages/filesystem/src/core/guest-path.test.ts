import { describe, expect, it } from "vitest";
import { isAtOrBelow, isValidGuestPath, joinGuest, nameProblem, splitParent, toRelative } from "./guest-path.js";

describe("guest paths", () => {
  it("accepts the paths libfuse sends", () => {
    for (const p of ["/", "/a", "/a/b.c", "/.iii/x", "/a/..b", "/a/b..", "/...", "/a b/ç"]) expect(isValidGuestPath(p), p).toBe(true);
  });

  it("refuses '..', '.', empty components, NUL and relative paths", () => {
    for (const p of ["", "a", "/..", "/a/..", "/a/../b", "/.", "/a/./b", "//a", "/a//b", "/a/", "/a\0b", "/../../etc/passwd"]) {
      expect(isValidGuestPath(p), JSON.stringify(p)).toBe(false);
    }
  });

  it("names: '/', NUL, '.', '..' and over-long names are refused", () => {
    expect(nameProblem("ok")).toBeNull();
    expect(nameProblem("a/b")).toBe("slash");
    expect(nameProblem("a\0")).toBe("nul");
    expect(nameProblem("..")).toBe("dotdot");
    expect(nameProblem(".")).toBe("dot");
    expect(nameProblem("")).toBe("empty");
    expect(nameProblem("x".repeat(256))).toBe("too-long");
    expect(nameProblem("é".repeat(128))).toBe("too-long");
  });

  it("splits and joins", () => {
    expect(splitParent("/")).toEqual(["/", ""]);
    expect(splitParent("/a")).toEqual(["/", "a"]);
    expect(splitParent("/a/b/c")).toEqual(["/a/b", "c"]);
    expect(toRelative("/")).toBe(".");
    expect(toRelative("/a/b")).toBe("a/b");
    expect(joinGuest("/", "x")).toBe("/x");
    expect(joinGuest("/a", "x")).toBe("/a/x");
    expect(isAtOrBelow("/a/b", "/a")).toBe(true);
    expect(isAtOrBelow("/ab", "/a")).toBe(false);
    expect(isAtOrBelow("/a", "/a")).toBe(true);
    expect(isAtOrBelow("/x", "/")).toBe(true);
  });
});
