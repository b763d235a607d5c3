import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, statSync, symlinkSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { tryHoldFileLock, withFileLock } from "./file-lock.js";

// A lock file can sit in a directory a worker writes (`iii.workers.yaml.lock` in the project `iii worker dev`
// shares read-write): a link planted at its name must be refused, never followed (security review s14 #6).

let dir: string;
let victim: string;
beforeEach(() => {
  dir = mkdtempSync(join(tmpdir(), "iii-file-lock-"));
  victim = join(dir, "victim");
  mkdirSync(join(dir, "project"));
  mkdirSync(victim);
  writeFileSync(join(victim, "important.conf"), "precious host config\n");
});
afterEach(() => rmSync(dir, { recursive: true, force: true }));

const lockPath = () => join(dir, "project", "iii.workers.yaml.lock");

describe("file locks never follow a link at the lock's name", () => {
  it("withFileLock: a link to a new host path is refused with one line; its target is not created", async () => {
    const target = join(victim, "created-by-iii");
    symlinkSync(target, lockPath());
    let ran = false;
    const run = withFileLock(lockPath(), async () => {
      ran = true;
    });
    await expect(run).rejects.toMatchObject({
      code: "StateFileUnwritable",
      message: `lock file ${lockPath()} is a symbolic link (to ${target}): refusing to follow it; remove it and retry`,
    });
    expect(ran).toBe(false);
    expect(existsSync(target)).toBe(false);
  });

  it("withFileLock and tryHoldFileLock: a link to an existing host file is refused; the file is untouched", async () => {
    const target = join(victim, "important.conf");
    const before = statSync(target);
    symlinkSync(target, lockPath());
    await expect(withFileLock(lockPath(), async () => {})).rejects.toMatchObject({ code: "StateFileUnwritable", message: expect.stringContaining("is a symbolic link") });
    await expect(tryHoldFileLock(lockPath())).rejects.toMatchObject({ code: "StateFileUnwritable", message: expect.stringContaining("is a symbolic link") });
    expect(readFileSync(target, "utf8")).toBe("precious host config\n");
    expect(statSync(target)).toMatchObject({ size: before.size, mtimeMs: before.mtimeMs, ctimeMs: before.ctimeMs, mode: before.mode });
  });

  it("a directory at the lock's name is refused with one line", async () => {
    mkdirSync(lockPath());
    await expect(withFileLock(lockPath(), async () => {})).rejects.toMatchObject({ code: "StateFileUnwritable", message: expect.stringContaining(`cannot open lock file ${lockPath()}`) });
  });

  it("a plain lock file is created and locks as before", async () => {
    await expect(withFileLock(lockPath(), async () => 42)).resolves.toBe(42);
    expect(statSync(lockPath()).isFile()).toBe(true);
    const held = await tryHoldFileLock(lockPath());
    expect(held).toBeDefined();
    await expect(withFileLock(lockPath(), async () => 1, 100)).rejects.toMatchObject({ code: "StateLockTimeout" });
    await held!.release();
    await expect(withFileLock(lockPath(), async () => 2)).resolves.toBe(2);
  });
});
