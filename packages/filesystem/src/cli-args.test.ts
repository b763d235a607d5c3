import { describe, expect, it } from "vitest";
import { EXIT, parseMountArgs } from "./cli-args.js";

describe("iii-fs mount arguments", () => {
  it("passthrough with injections and cache flags", () => {
    const o = parseMountArgs(["/r", "/m", "--ro", "--inject", "/init.krun=/opt/init", "--inject", "/.iii/env=/tmp/env", "--attr-timeout", "0", "--no-auto-unmount"]);
    expect(o).toMatchObject({
      root: "/r",
      mountpoint: "/m",
      readOnly: true,
      autoUnmount: false,
      virtualFiles: { "/init.krun": { hostPath: "/opt/init" }, "/.iii/env": { hostPath: "/tmp/env" } },
      cache: { attrTimeoutSec: 0, kernelCache: true },
    });
    expect(o.layers).toBeUndefined();
    expect(o.useIno).toBe(false);
    expect(parseMountArgs(["/r", "/m", "--use-ino"]).useIno).toBe(true);
    expect(o.stableInodes).toBe(false);
    expect(parseMountArgs(["/r", "/m", "--stable-inodes"]).stableInodes).toBe(true);
    expect(o.defaultPermissions).toBe(false);
    expect(parseMountArgs(["/r", "/m", "--allow-other"]).defaultPermissions).toBe(true);
    expect(parseMountArgs(["/r", "/m", "--allow-other", "--no-default-permissions"]).defaultPermissions).toBe(false);
  });

  it("layers take one positional", () => {
    expect(parseMountArgs(["--lower", "/l", "--upper", "/u", "/m"])).toMatchObject({ layers: { lower: "/l", upper: "/u" }, mountpoint: "/m" });
    expect(parseMountArgs(["--lower", "/l", "--upper", "/u", "/m", "--upper-limit", "1048576"]).upperLimitBytes).toBe(1048576);
  });

  it("rejects bad usage with InvalidOptions (exit 2)", () => {
    for (const args of [["/r"], ["--lower", "/l", "/m"], ["--lower", "/l", "--upper", "/u", "/r", "/m"], ["/r", "/m", "--inject", "nonsense"], ["/r", "/m", "--entry-timeout", "-1"], ["/r", "/m", "--use-ino", "--stable-inodes"], ["/r", "/m", "--upper-limit", "1024"], ["--lower", "/l", "--upper", "/u", "/m", "--upper-limit", "1Gi"], ["--lower", "/l", "--upper", "/u", "/m", "--upper-limit", "0"]]) {
      expect(() => parseMountArgs(args), args.join(" ")).toThrow(expect.objectContaining({ code: "InvalidOptions" }));
    }
    expect(EXIT.InvalidOptions).toBe(2);
    expect(EXIT.ExternalUnmount).toBe(3);
  });
});
