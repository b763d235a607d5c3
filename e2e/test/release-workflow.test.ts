// The release path: one user, a green CI first, and the changeset check wired into CI and the test script.
import { readFileSync } from "node:fs";
import { fileURLToPath } from "node:url";
import { describe, expect, it } from "vitest";

const read = (path: string): string => readFileSync(fileURLToPath(new URL(`../../${path}`, import.meta.url)), "utf8");

describe("release.yml", () => {
  const release = read(".github/workflows/release.yml");

  it("runs only after the ci workflow succeeded on a push to main, on the commit it tested", () => {
    expect(release).toMatch(/on:\n  workflow_run:\n    workflows: \[ci\]\n    types: \[completed\]\n    branches: \[main\]\n/);
    expect(release).toContain("if: github.event.workflow_run.conclusion == 'success' && github.event.workflow_run.event == 'push'");
    expect(release).toContain("ref: ${{ github.event.workflow_run.head_sha }}");
    expect(release).not.toMatch(/^\s*push:/m);
  });

  it("runs every step as one user (root in a Debian 12 container): no sudo", () => {
    expect(release).toMatch(/^    container: debian:12$/m);
    expect(release).not.toContain("sudo");
    expect(release).toContain("run: ./scripts/bootstrap.sh");
  });
});

describe("the changeset check", () => {
  it("runs in ci.yml before the tests and in scripts/test.sh", () => {
    const ci = read(".github/workflows/ci.yml");
    expect(ci).toContain("run: node scripts/check-changesets.mjs");
    expect(ci).toContain("fetch-depth: 0");
    expect(read("scripts/test.sh")).toMatch(/^node scripts\/check-changesets\.mjs \|\| status=1$/m);
  });
});
