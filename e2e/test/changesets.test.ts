// scripts/check-changesets.mjs against throwaway git repositories.
import { execFileSync, spawnSync } from "node:child_process";
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { afterEach, describe, expect, it } from "vitest";

const SCRIPT = fileURLToPath(new URL("../../scripts/check-changesets.mjs", import.meta.url));
const repos: string[] = [];
afterEach(() => {
  for (const dir of repos.splice(0)) rmSync(dir, { recursive: true, force: true });
});

function write(repo: string, path: string, text: string): void {
  mkdirSync(dirname(join(repo, path)), { recursive: true });
  writeFileSync(join(repo, path), text);
}
const manifest = (name: string, version = "0.1.0", extra: object = {}) => `${JSON.stringify({ name, version, ...extra }, null, 2)}\n`;
const changeset = (names: string[]) => `---\n${names.map((n) => `"${n}": patch`).join("\n")}\n---\n\nA change.\n`;

function git(repo: string, ...args: string[]): string {
  return execFileSync("git", ["-c", "user.name=t", "-c", "user.email=t@example.invalid", "-c", "commit.gpgsign=false", ...args], { cwd: repo, encoding: "utf8" });
}
function commitAll(repo: string, message: string): void {
  git(repo, "add", "-A");
  git(repo, "commit", "-qm", message);
}

/** main with two public packages and one private one, all released. */
function repoWithMain(): string {
  const repo = mkdtempSync(join(tmpdir(), "iii-changesets-"));
  repos.push(repo);
  git(repo, "init", "-q", "-b", "main");
  write(repo, ".changeset/README.md", "# Changesets\n");
  write(repo, ".changeset/config.json", "{}\n");
  write(repo, "packages/a/package.json", manifest("@t/a"));
  write(repo, "packages/a/src/index.ts", "export const a = 1;\n");
  write(repo, "packages/b/package.json", manifest("@t/b"));
  write(repo, "packages/b/src/index.ts", "export const b = 1;\n");
  write(repo, "packages/p/package.json", manifest("@t/p", "0.0.0", { private: true }));
  write(repo, "packages/p/src/index.ts", "export const p = 1;\n");
  commitAll(repo, "initial");
  return repo;
}

function check(repo: string, ...args: string[]): { status: number | null; stdout: string; stderr: string } {
  const run = spawnSync(process.execPath, [SCRIPT, "--repo", repo, ...args], { encoding: "utf8", env: { ...process.env, III_CHANGESET_BASE: "" } });
  return { status: run.status, stdout: run.stdout, stderr: run.stderr };
}

describe("check-changesets on a branch (against the merge base with main)", () => {
  it("fails a source change without a changeset, naming the package and the file, in one line", () => {
    const repo = repoWithMain();
    git(repo, "checkout", "-qb", "feature");
    write(repo, "packages/a/src/index.ts", "export const a = 2;\n");
    commitAll(repo, "a: change");
    const run = check(repo);
    expect(run.status).toBe(1);
    expect(run.stderr).toMatch(/^changesets: @t\/a changed since main \(merge base [0-9a-f]{12}\) \(packages\/a\/src\/index\.ts\) but no changeset names it: run "pnpm changeset"\n$/);
  });

  it("passes with a changeset naming the package, and not with one naming another", () => {
    const repo = repoWithMain();
    git(repo, "checkout", "-qb", "feature");
    write(repo, "packages/a/src/index.ts", "export const a = 2;\n");
    write(repo, ".changeset/other.md", changeset(["@t/b"]));
    commitAll(repo, "a: change, changeset for b");
    expect(check(repo).stderr).toContain("changesets: @t/a changed");
    write(repo, ".changeset/a.md", changeset(["@t/a"]));
    commitAll(repo, "changeset for a");
    expect(check(repo)).toMatchObject({ status: 0, stdout: expect.stringMatching(/^changesets: ok/) });
  });

  it("counts package.json and uncommitted or untracked files, not tests, README or private packages", () => {
    const repo = repoWithMain();
    git(repo, "checkout", "-qb", "feature");
    write(repo, "packages/a/src/index.test.ts", "test\n");
    write(repo, "packages/a/test/x.test.ts", "test\n");
    write(repo, "packages/a/README.md", "docs\n");
    write(repo, "packages/p/src/index.ts", "export const p = 2;\n");
    commitAll(repo, "tests and docs");
    expect(check(repo).status).toBe(0);
    write(repo, "packages/b/src/new.ts", "export {};\n"); // untracked
    write(repo, "packages/a/package.json", manifest("@t/a", "0.1.0", { description: "x" })); // unstaged
    const run = check(repo);
    expect(run.status).toBe(1);
    expect(run.stderr.split("\n").filter(Boolean)).toEqual([
      expect.stringContaining("changesets: @t/a changed since main"),
      expect.stringContaining("changesets: @t/b changed since main"),
    ]);
  });

  it("passes a release (versions bumped, the applied changesets deleted)", () => {
    const repo = repoWithMain();
    write(repo, "packages/a/src/index.ts", "export const a = 2;\n");
    write(repo, ".changeset/a.md", changeset(["@t/a"]));
    commitAll(repo, "a: change with changeset");
    git(repo, "checkout", "-qb", "changeset-release/main");
    git(repo, "rm", "-q", ".changeset/a.md");
    write(repo, "packages/a/package.json", manifest("@t/a", "0.1.1"));
    commitAll(repo, "Version Packages");
    expect(check(repo).status).toBe(0);
  });

  it("takes --base over origin/main and main", () => {
    const repo = repoWithMain();
    git(repo, "checkout", "-qb", "feature");
    write(repo, "packages/a/src/index.ts", "export const a = 2;\n");
    write(repo, ".changeset/a.md", changeset(["@t/a"]));
    commitAll(repo, "a with changeset");
    const base = git(repo, "rev-parse", "HEAD").trim();
    write(repo, "packages/b/src/index.ts", "export const b = 2;\n");
    commitAll(repo, "b without");
    expect(check(repo, "--base", base).stderr).toMatch(/^changesets: @t\/b changed since [0-9a-f]{40} /);
    expect(check(repo, "--base", "nonexistent-ref")).toMatchObject({ status: 2, stderr: expect.stringContaining("no merge base between nonexistent-ref and HEAD") });
  });
});

describe("check-changesets on main itself (a clean clone: since each package's last release)", () => {
  it("fails a change since the last release that no pending changeset names", () => {
    const repo = repoWithMain();
    write(repo, "packages/b/src/index.ts", "export const b = 2;\n");
    commitAll(repo, "b: change without changeset");
    const run = check(repo);
    expect(run.status).toBe(1);
    expect(run.stderr).toBe(
      `changesets: @t/b changed since each package's last release (HEAD is main) (packages/b/src/index.ts) but no changeset names it: run "pnpm changeset"\n`,
    );
  });

  it("passes with a pending changeset, and after the release that consumed it", () => {
    const repo = repoWithMain();
    write(repo, "packages/b/src/index.ts", "export const b = 2;\n");
    write(repo, ".changeset/b.md", changeset(["@t/b"]));
    commitAll(repo, "b: change with changeset");
    expect(check(repo).status).toBe(0);
    git(repo, "rm", "-q", ".changeset/b.md");
    write(repo, "packages/b/package.json", manifest("@t/b", "0.1.1"));
    commitAll(repo, "Version Packages");
    expect(check(repo).status).toBe(0);
  });

  it("works in a clone whose only ref is origin/main (CI's clean clone)", () => {
    const repo = repoWithMain();
    write(repo, "packages/a/src/index.ts", "export const a = 2;\n");
    commitAll(repo, "a without changeset");
    const clone = mkdtempSync(join(tmpdir(), "iii-changesets-clone-"));
    repos.push(clone);
    execFileSync("git", ["clone", "-q", repo, clone]);
    expect(check(clone).stderr).toContain("changesets: @t/a changed since each package's last release (HEAD is origin/main)");
  });
});
