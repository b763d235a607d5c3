import { describe, expect, it } from "vitest";
import { mkdirSync, mkdtempSync, rmSync, symlinkSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { assertClearOfIii, assertProjectFileNotShared, assertSharesClearOfIii } from "./share-safety.js";

const refused = (message: RegExp) => expect.objectContaining({ code: "InvalidOption", message: expect.stringMatching(message) });

describe("assertClearOfIii: one check for VM shares and WASM mounts", () => {
  const paths = { home: "/h/.iii", projectFile: "/p/iii.workers.yaml", otherModules: ["/p/mods/other.wasm"], code: ["/opt/iii"] };

  it("refuses any share overlapping III_HOME, read-only or not, above or below it", () => {
    for (const host of ["/h", "/h/.iii", "/h/.iii/images", "/"]) {
      for (const readOnly of [false, true]) {
        expect(() => assertClearOfIii([{ host, guest: "/g", readOnly }], paths)).toThrow(refused(/^cannot share \S+ \(\/g\): it overlaps III_HOME \(\/h\/\.iii\)/));
      }
    }
    expect(() => assertClearOfIii([{ host: "/h/.iiix", guest: "/g", readOnly: false }], paths)).not.toThrow();
  });

  it("refuses a writable share holding the project file, another worker's module or iii's code, in that order; read-only passes", () => {
    const at = (host: string, readOnly = false) => () => assertClearOfIii([{ host, guest: "/g", readOnly }], paths);
    expect(at("/p")).toThrow(refused(/writable: it holds \/p\/iii\.workers\.yaml, where the guest could rewrite its own settings/));
    expect(at("/p/mods")).toThrow(refused(/writable: it holds \/p\/mods\/other\.wasm, another worker's module/));
    expect(at("/opt")).toThrow(refused(/writable: it holds \/opt\/iii, code iii runs on the host/));
    for (const host of ["/p", "/p/mods", "/opt"]) expect(at(host, true)).not.toThrow();
    expect(at("/p/src")).not.toThrow();
  });

  it("the VM entry points check what they name and nothing else", () => {
    const project = [{ host: "/p", guest: "/app", readOnly: false }];
    expect(() => assertSharesClearOfIii(project, "/h/.iii", ["/opt/iii"])).not.toThrow();
    expect(() => assertProjectFileNotShared(project, "/p/iii.workers.yaml")).toThrow(refused(/iii\.workers\.yaml/));
    expect(() => assertProjectFileNotShared([{ host: "/h", guest: "/h", readOnly: false }], "/p/iii.workers.yaml")).not.toThrow();
  });
});

describe("hostActedPaths", () => {
  it("names the project's workers file, its lock and .git when the share holds them, and the share's own .git", async () => {
    const { hostActedPaths } = await import("./share-safety.js");
    const base = mkdtempSync(join(tmpdir(), "iii-acted-"));
    try {
      const project = join(base, "proj");
      mkdirSync(join(project, "sub"), { recursive: true });
      expect(hostActedPaths(project, project)).toEqual(["/iii.workers.yaml", "/iii.workers.yaml.lock", "/.git"]);
      expect(hostActedPaths(base, project)).toEqual(["/proj/iii.workers.yaml", "/proj/iii.workers.yaml.lock", "/proj/.git", "/.git"]);
      // A share below the project holds none of the project's files, only its own .git.
      expect(hostActedPaths(join(project, "sub"), project)).toEqual(["/.git"]);
      // The workers file as a link into the share: its target is protected too (outside the share: nothing to do).
      mkdirSync(join(project, "config"));
      writeFileSync(join(project, "config", "workers.yaml"), "workers: {}\n");
      symlinkSync("config/workers.yaml", join(project, "iii.workers.yaml"));
      expect(hostActedPaths(project, project)).toEqual(["/iii.workers.yaml", "/iii.workers.yaml.lock", "/.git", "/config/workers.yaml"]);
      rmSync(join(project, "iii.workers.yaml"));
      // Spelled through a link, the same share.
      symlinkSync(project, join(base, "link"));
      expect(hostActedPaths(join(base, "link"), project)).toEqual(["/iii.workers.yaml", "/iii.workers.yaml.lock", "/.git"]);
    } finally {
      rmSync(base, { recursive: true, force: true });
    }
  });
});
