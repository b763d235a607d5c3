import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { runWorkerCli } from "../helpers.js";

let dir: string;
beforeAll(() => {
  dir = mkdtempSync(join(tmpdir(), "iii-cli-ux-opt-"));
});
afterAll(() => rmSync(dir, { recursive: true, force: true }));

function project(): { cwd: string; env: NodeJS.ProcessEnv } {
  const cwd = mkdtempSync(join(dir, "p-"));
  writeFileSync(join(cwd, "iii.workers.yaml"), "workers:\n  a:\n    image: ghcr.io/acme/a:1\n");
  return { cwd, env: { III_HOME: join(cwd, "home") } };
}

describe("bad option values are named as such", () => {
  it("login of something that is no host names what the user typed, not a made-up reference", async () => {
    const p = project();
    for (const registry of ["", "a b", "http://x"]) {
      const run = await runWorkerCli(["login", registry, "-u", "me", "--password-stdin"], p);
      expect(run.code, run.stderr).toBe(1);
      // was: invalid image reference "a b/probe": the repository must be lowercase path components …
      expect(run.stderr.trim()).toBe(`iii-worker: login ${JSON.stringify(registry)}: not a registry host; name the registry as host.domain, host:port or localhost [InvalidReference]`);
    }
  });

  it("exec --timeout with a bad value is refused before the worker's state (a stopped worker hid it)", async () => {
    const p = project();
    const run = await runWorkerCli(["exec", "a", "--timeout", "abc", "--", "true"], p);
    expect(run.code).toBe(1);
    expect(run.stderr.trim()).toBe('iii-worker: invalid --timeout "abc": expected seconds (0 disables) [InvalidOption]');
  });
});
