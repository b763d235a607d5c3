import { execFileSync } from "node:child_process";
import { mkdirSync, mkdtempSync, rmSync, symlinkSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { detectProject, installKey, installState, readInstallMarker } from "../src/dev/index.js";

// What `iii worker dev` reads from the project on the host is written by the dev guest (the project is its
// /workspace, read-write) or came with a cloned repository: links out of it, loops, FIFOs, devices. Each case plants
// one as the guest (or the repository) would and checks that the host neither reads outside the project, nor blocks,
// nor reads without bound, nor throws from the watcher's install-input check (which ended the dev CLI, VM left running).

let root: string;
let proj: string;
let outside: string;

beforeEach(() => {
  root = mkdtempSync(join(tmpdir(), "iii-dev-host-reads-"));
  proj = join(root, "proj");
  outside = join(root, "host");
  mkdirSync(proj);
  mkdirSync(outside);
});
afterEach(() => rmSync(root, { recursive: true, force: true }));

const INPUTS = ["iii.worker.yaml", "package.json", "package-lock.json"];

/** Settles within `ms` or fails: a host read that blocks (a FIFO) must not hang the test run. */
function within<T>(promise: Promise<T>, ms = 5_000): Promise<T> {
  return Promise.race([promise, new Promise<T>((_, reject) => setTimeout(() => reject(new Error(`still pending after ${ms} ms`)), ms).unref())]);
}

describe("iii worker dev reads only regular files inside the project", () => {
  it("iii.worker.yaml -> a host file: refused, none of its values reach the project (and so the guest)", async () => {
    writeFileSync(join(outside, "ci.yaml"), "name: host-config\nenv:\n  AWS_SECRET_ACCESS_KEY: host-secret\nscripts:\n  start: node x.js\n");
    symlinkSync(join(outside, "ci.yaml"), join(proj, "iii.worker.yaml"));
    writeFileSync(join(proj, "package.json"), "{}");
    const result = await within(detectProject(proj).then((p) => JSON.stringify(p.env), (e: { problem?: string; message: string }) => `${e.problem}: ${e.message}`));
    expect(result).not.toContain("host-secret");
    expect(result).toMatch(/^UnsafeProjectFile: .*iii\.worker\.yaml is a link out of the project \(to .*ci\.yaml\)/);
  });

  it("package.json -> /dev/zero: refused at once, nothing read", async () => {
    symlinkSync("/dev/zero", join(proj, "package.json"));
    const before = process.memoryUsage().rss;
    const error = await within(detectProject(proj).then(() => undefined, (e: unknown) => e));
    expect(error).toMatchObject({ problem: "UnsafeProjectFile" });
    expect(process.memoryUsage().rss - before).toBeLessThan(64 * 2 ** 20);
  });

  it("a FIFO (from an unpacked archive) at package.json or .iii/dev/installing: never opened, nothing blocks", async () => {
    execFileSync("mkfifo", [join(proj, "package.json")]);
    await expect(within(detectProject(proj))).rejects.toMatchObject({ problem: "UnsafeProjectFile", message: expect.stringContaining("not a regular file") });
    rmSync(join(proj, "package.json"));
    mkdirSync(join(proj, ".iii/dev"), { recursive: true });
    execFileSync("mkfifo", [join(proj, ".iii/dev/installing")]);
    expect(await within(installState(proj, INPUTS))).toBe("installing");
  });

  it("a link loop at an install input: installState answers 'needed' instead of throwing ELOOP", async () => {
    writeFileSync(join(proj, "package.json"), "{}");
    symlinkSync("package-lock.json", join(proj, "package-lock.json"));
    expect(await within(installState(proj, INPUTS))).toBe("needed");
    expect(await within(installKey(proj, INPUTS))).toMatch(/^[0-9a-f]{64}$/);
  });

  it("install.key -> /dev/zero, lockfile -> a host file: no marker, and the host file's bytes never hashed", async () => {
    mkdirSync(join(proj, ".iii/dev"), { recursive: true });
    symlinkSync("/dev/zero", join(proj, ".iii/dev/install.key"));
    expect(await within(readInstallMarker(proj))).toBeUndefined();
    writeFileSync(join(outside, "lock"), "x");
    symlinkSync(join(outside, "lock"), join(proj, "package-lock.json"));
    const linked = await installKey(proj, INPUTS);
    rmSync(join(proj, "package-lock.json"));
    writeFileSync(join(proj, "package-lock.json"), "x");
    expect(linked).not.toBe(await installKey(proj, INPUTS));
  });

  it("a directory above a candidate linked out (src -> host dir): not taken as the project's file", async () => {
    mkdirSync(join(outside, "app"));
    writeFileSync(join(outside, "app/__main__.py"), "");
    symlinkSync(outside, join(proj, "src"));
    writeFileSync(join(proj, "pyproject.toml"), '[project]\nname = "app"\n');
    await expect(detectProject(proj)).rejects.toMatchObject({ problem: "NoStartCommand" });
  });

  it("links that stay in the project still work", async () => {
    mkdirSync(join(proj, "pkg"));
    writeFileSync(join(proj, "pkg/package.json"), JSON.stringify({ name: "linked", scripts: { start: "node ." } }));
    symlinkSync("pkg/package.json", join(proj, "package.json"));
    writeFileSync(join(proj, "pkg/lock"), "{}");
    symlinkSync("pkg/lock", join(proj, "package-lock.json"));
    const project = await detectProject(proj);
    expect(project.scripts).toMatchObject({ start: "npm start", install: "npm ci" });
  });
});
