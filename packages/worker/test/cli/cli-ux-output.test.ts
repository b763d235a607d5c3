import { spawn } from "node:child_process";
import { createServer } from "node:http";
import { mkdtempSync, openSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { runWorkerCli, WORKER_CLI } from "../helpers.js";

let dir: string;
beforeAll(() => {
  dir = mkdtempSync(join(tmpdir(), "iii-cli-ux-out-"));
});
afterAll(() => rmSync(dir, { recursive: true, force: true }));

function project(): { cwd: string; env: NodeJS.ProcessEnv } {
  const cwd = mkdtempSync(join(dir, "p-"));
  writeFileSync(join(cwd, "iii.workers.yaml"), "workers:\n  a:\n    image: ghcr.io/acme/a:1\n");
  return { cwd, env: { III_HOME: join(cwd, "home") } };
}

/** Runs the CLI with stdout on `/dev/full` (every write fails with ENOSPC), stderr captured. */
function runToFullDisk(args: string[], options: { cwd: string; env: NodeJS.ProcessEnv }): Promise<{ code: number | null; stderr: string }> {
  return new Promise((resolve, reject) => {
    const full = openSync("/dev/full", "w");
    const child = spawn(process.execPath, [WORKER_CLI, ...args], { cwd: options.cwd, env: { ...process.env, ...options.env }, stdio: ["ignore", full, "pipe"] });
    let stderr = "";
    child.stderr!.on("data", (d) => (stderr += d));
    child.on("error", reject);
    child.on("close", (code) => resolve({ code, stderr }));
  });
}

describe("output that cannot be written", () => {
  it("stdout on a full disk: one line naming it, exit 1, no stack", async () => {
    const p = project();
    for (const args of [["list"], ["list", "--json"], ["inspect", "a"], ["--version"]]) {
      const run = await runToFullDisk(args, p);
      expect(run.code, args.join(" ")).toBe(1);
      expect(run.stderr.trim().split("\n"), args.join(" ")).toEqual(["iii-worker: cannot write the output to stdout: ENOSPC: no space left on device, write [ENOSPC]"]);
    }
  });
});

describe("add refuses options that cannot all hold", () => {
  it("two -p on one host port, or two -m on one guest path: one line, exit 1, nothing written", async () => {
    const p = project();
    const before = readFileSync(join(p.cwd, "iii.workers.yaml"), "utf8");
    const ports = await runWorkerCli(["add", "ghcr.io/acme/w:1", "--no-pull", "-p", "8080:80", "-p", "8080:81"], p);
    expect(ports.code).toBe(1);
    expect(ports.stderr.trim()).toBe("iii-worker: invalid --port 8080:81: host port 8080 is already published (8080:80) [InvalidOption]");
    const mounts = await runWorkerCli(["add", "ghcr.io/acme/w:1", "--no-pull", "-m", `${p.cwd}/s1:/data`, "-m", `${p.cwd}/s2:/data/:ro`], p);
    expect(mounts.code).toBe(1);
    expect(mounts.stderr.trim()).toBe(`iii-worker: invalid --mount ${p.cwd}/s2:/data/: guest path /data is already shared (from ${p.cwd}/s1) [InvalidOption]`);
    expect(readFileSync(join(p.cwd, "iii.workers.yaml"), "utf8")).toBe(before);
    // one guest port behind two host ports, and nested guest paths, are fine
    const ok = await runWorkerCli(["add", "ghcr.io/acme/w:1", "--no-pull", "-p", "8080:80", "-p", "8081:80", "-m", `${p.cwd}/s1:/data`, "-m", `${p.cwd}/s2:/data/sub:ro`], p);
    expect(ok.code, ok.stderr).toBe(0);
  });
});

describe("add of an image that is no name at all", () => {
  it('add "" and add "my app": one line, exit 1, and the registry index is never fetched', async () => {
    let requests = 0;
    const index = createServer((_, res) => {
      requests += 1;
      res.setHeader("content-type", "application/json");
      res.end(JSON.stringify({ version: 1, workers: {} }));
    });
    await new Promise<void>((r) => index.listen(0, "127.0.0.1", r));
    try {
      const p = project();
      const env = { ...p.env, III_REGISTRY_URL: `http://127.0.0.1:${(index.address() as { port: number }).port}/index.json` };
      for (const image of ["", " ", "my app", "@1"]) {
        for (const pull of [[], ["--no-pull"]]) {
          const run = await runWorkerCli(["add", image, ...pull], { cwd: p.cwd, env });
          expect(run.code, run.stderr).toBe(1);
          expect(run.stderr.trim()).toBe(
            `iii-worker: invalid image "${image}": expected an image reference (alpine:3.20, ghcr.io/acme/api:1), an iii short name (image-resize, image-resize@0.2.0) or a local source (dir:/path, oci:/path) [InvalidReference]`,
          );
        }
      }
      expect(requests).toBe(0);
    } finally {
      await new Promise((r) => index.close(r));
    }
  });
});
