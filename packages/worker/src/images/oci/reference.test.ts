import { describe, expect, it } from "vitest";
import { parseImageReference, workerNameFor } from "./reference.js";

describe("image references", () => {
  it("parses registry, repository, tag and digest", () => {
    expect(parseImageReference("ghcr.io/acme/image-resize:0.1.2")).toEqual({
      registry: "ghcr.io",
      repository: "acme/image-resize",
      tag: "0.1.2",
    });
    expect(parseImageReference("127.0.0.1:5000/test/app:1")).toEqual({ registry: "127.0.0.1:5000", repository: "test/app", tag: "1" });
    expect(parseImageReference("busybox")).toEqual({ registry: "docker.io", repository: "library/busybox" });
    const digest = `sha256:${"a".repeat(64)}`;
    expect(parseImageReference(`localhost/x@${digest}`)).toEqual({ registry: "localhost", repository: "x", digest });
  });

  it.each([
    ["Ghcr.io/Acme/App", "repository"],
    ["ghcr.io/acme/app:", "tag"],
    ["ghcr.io/acme/app@sha256:zz", "digest"],
    ["ghcr.io//app", "repository"],
    ["ghcr.io/acme/app:bad tag", "tag"],
  ])("rejects %s", (text, what) => {
    expect(() => parseImageReference(text)).toThrow(new RegExp(`invalid image reference.*${what}`));
  });

  it("names workers after the last path segment without tag or digest", () => {
    expect(workerNameFor("ghcr.io/iii-hq/image-resize:0.1.2")).toBe("image-resize");
    expect(workerNameFor(`ghcr.io/a/b@sha256:${"0".repeat(64)}`)).toBe("b");
    expect(workerNameFor("dir:/srv/rootfs/My_Worker/")).toBe("my_worker");
  });
});
