import { spawnSync } from "node:child_process";
import { accessSync, constants, readFileSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { describe, expect, it } from "vitest";
import { baseImageBuildScript, devBaseImage } from "../../src/cli/commands/dev-run.js";
import type { DevProject } from "../../src/dev/index.js";

const PACKAGE_DIR = fileURLToPath(new URL("../..", import.meta.url));

describe("dev base image build script", () => {
  it("is the package's own images/build.sh, executable, with both images' definitions beside it", () => {
    const script = baseImageBuildScript();
    expect(script).toBe(join(PACKAGE_DIR, "images", "build.sh"));
    accessSync(script, constants.X_OK);
    for (const name of ["node", "python"]) accessSync(join(dirname(script), name, "Dockerfile"), constants.R_OK);
  });

  it("is shipped: package.json's files lists images/", () => {
    const pkg = JSON.parse(readFileSync(join(PACKAGE_DIR, "package.json"), "utf8")) as { files: string[] };
    expect(pkg.files).toContain("images");
  });

  it("a missing dev image names the command that builds it, with the script's absolute path", () => {
    const project = { baseImage: "node" } as DevProject;
    expect(() => devBaseImage(project, {})).toThrow(`III_DEV_IMAGE_NODE=oci:$(${join(PACKAGE_DIR, "images", "build.sh")} node):latest`);
    expect(devBaseImage(project, { III_DEV_IMAGE_NODE: "oci:/x:latest" })).toBe("oci:/x:latest");
  });

  it("the repository's images/build.sh still runs the same script", () => {
    const run = spawnSync(join(PACKAGE_DIR, "..", "..", "images", "build.sh"), ["--help"], { encoding: "utf8" });
    expect(run.status).toBe(2);
    expect(run.stderr.trim()).toBe(`usage: ${join(PACKAGE_DIR, "images", "build.sh")} <node|python> [--cache DIR]`);
  });
});
