import { chmodSync, existsSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync, symlinkSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { runWorkerCli } from "../helpers.js";

// iii.workers.yaml lives in the project directory, which `iii worker dev` mounts read-write into its
// guest: a link the guest plants at that name must not make the next `iii worker add` write elsewhere.
let dir: string;
beforeAll(() => {
  dir = mkdtempSync(join(tmpdir(), "iii-state-links-"));
});
afterAll(() => rmSync(dir, { recursive: true, force: true }));

describe("iii.workers.yaml is never written through a link", () => {
  it("hostile: a link at iii.workers.yaml is refused in one line; its target is untouched and nothing is created", async () => {
    const cwd = mkdtempSync(join(dir, "proj-"));
    const victim = join(dir, `victim-${Date.now()}.conf`);
    writeFileSync(victim, "workers: {}\n# precious host config\n");
    const dangling = join(dir, `created-by-iii-${Date.now()}`);
    for (const target of [victim, dangling]) {
      rmSync(join(cwd, "iii.workers.yaml"), { force: true });
      symlinkSync(target, join(cwd, "iii.workers.yaml"));
      const run = await runWorkerCli(["add", "ghcr.io/acme/w:1", "--no-pull"], { cwd, env: { III_HOME: join(cwd, "home") } });
      expect(run.code).not.toBe(0);
      expect(run.stderr.trim().split("\n")).toHaveLength(1);
      expect(run.stderr).toMatch(/iii\.workers\.yaml is a symbolic link .*\[StateFileUnwritable\]/);
    }
    expect(readFileSync(victim, "utf8")).toBe("workers: {}\n# precious host config\n");
    expect(existsSync(dangling)).toBe(false);
    expect(readdirSync(cwd).filter((n) => n.endsWith(".tmp"))).toEqual([]);
  });

  it("a regular file is replaced atomically and keeps its mode", async () => {
    const cwd = mkdtempSync(join(dir, "plain-"));
    const path = join(cwd, "iii.workers.yaml");
    writeFileSync(path, "workers: {}\n");
    chmodSync(path, 0o600);
    const run = await runWorkerCli(["add", "ghcr.io/acme/w:1", "--no-pull"], { cwd, env: { III_HOME: join(cwd, "home") } });
    expect(run.code, run.stderr).toBe(0);
    expect(readFileSync(path, "utf8")).toContain("ghcr.io/acme/w:1");
    expect(statSync(path).mode & 0o777).toBe(0o600);
  });
});
