import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync, existsSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { pathToFileURL } from "node:url";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { parse } from "yaml";
import { runWorkerCli } from "../helpers.js";

let dir: string;
let registryUrl: string;
beforeAll(() => {
  dir = mkdtempSync(join(tmpdir(), "iii-add-"));
  const index = join(dir, "index.json");
  writeFileSync(
    index,
    JSON.stringify({
      version: 1,
      workers: { "image-resize": { description: "resize images", image: "ghcr.io/iii-hq/image-resize", latest: "0.1.2" } },
    }),
  );
  registryUrl = pathToFileURL(index).href;
});
afterAll(() => rmSync(dir, { recursive: true, force: true }));

function project(): { cwd: string; env: NodeJS.ProcessEnv } {
  const cwd = mkdtempSync(join(dir, "p-"));
  return { cwd, env: { III_HOME: join(cwd, ".iii-home"), III_REGISTRY_URL: registryUrl } };
}

describe("iii-worker add / remove / list", () => {
  it("records a full reference with options, in a stable order", async () => {
    const p = project();
    mkdirSync(join(p.cwd, "data"));
    const run = await runWorkerCli(
      ["add", "--no-pull", "ghcr.io/acme/image-resize:0.1.2", "--cpus", "500m", "--memory", "512Mi", "--disk", "1Gi", "-e", "B=2", "-e", "A=1", "-p", "8080:80", "-m", `${p.cwd}/data:/data:ro`],
      p,
    );
    expect(run.code, run.stderr).toBe(0);
    const text = readFileSync(join(p.cwd, "iii.workers.yaml"), "utf8");
    const file = parse(text);
    expect(file.workers["image-resize"]).toEqual({
      image: "ghcr.io/acme/image-resize:0.1.2",
      env: { A: "1", B: "2" },
      resources: { cpus: "500m", memory: "512Mi", disk: "1Gi" },
      ports: ["8080:80"],
      mounts: [`${p.cwd}/data:/data:ro`],
      network: { allow: [], deny: [], hostPorts: [] },
    });
    expect(text.indexOf("A: \"1\"")).toBeLessThan(text.indexOf("B: \"2\""));
    const list = await runWorkerCli(["list", "--json"], p);
    expect(list.code).toBe(0);
    expect(JSON.parse(list.stdout)).toEqual([
      {
        name: "image-resize",
        image: "ghcr.io/acme/image-resize:0.1.2",
        status: "stopped",
        pid: null,
        lastExit: null,
        tier: "vm",
        network: { mode: "public", allow: [], deny: [], hostPorts: [] },
      },
    ]);
    const table = await runWorkerCli(["list"], p);
    expect(table.stdout).toMatch(/^NAME\s+IMAGE\s+STATUS\nimage-resize\s+ghcr\.io\/acme\/image-resize:0\.1\.2\s+stopped$/m);
  });

  it("resolves short names and pinned versions through the registry index", async () => {
    const p = project();
    expect((await runWorkerCli(["add", "--no-pull", "image-resize"], p)).code).toBe(0);
    expect((await runWorkerCli(["add", "--no-pull", "image-resize@0.2.0", "--name", "resize2"], p)).code).toBe(0);
    const file = parse(readFileSync(join(p.cwd, "iii.workers.yaml"), "utf8"));
    expect(file.workers["image-resize"].image).toBe("ghcr.io/iii-hq/image-resize:0.1.2");
    expect(file.workers.resize2.image).toBe("ghcr.io/iii-hq/image-resize:0.2.0");
  });

  it.each([
    [["add", "--no-pull", "Ghcr.io/Bad//Ref"], /invalid image reference "Ghcr.io\/Bad\/\/Ref"/],
    [["add", "--no-pull", "no-such-worker"], /worker "no-such-worker" not found in registry/],
    [["add", "--no-pull", "ghcr.io/acme/app:1", "--memory", "12XB"], /invalid memory "12XB"/],
    [["add", "--no-pull", "ghcr.io/acme/app:1", "--port", "99999:1"], /invalid host port "99999"/],
    [["add", "--no-pull", "ghcr.io/acme/app:1", "--disk", "10"], /^iii-worker: invalid disk "10": must be at least 64Mi \(a bare number is bytes: did you mean 10Gi\?\) \[InvalidQuantity\]$/m],
    [["add", "dir:/definitely/not/here"], /does not exist/],
  ])("%j fails with one clear line and changes nothing", async (args, message) => {
    const p = project();
    expect((await runWorkerCli(["add", "--no-pull", "ghcr.io/acme/keep:1"], p)).code).toBe(0);
    const before = readFileSync(join(p.cwd, "iii.workers.yaml"), "utf8");
    const run = await runWorkerCli(args, p);
    expect(run.code).toBe(1);
    expect(run.stderr.trim().split("\n")).toHaveLength(1);
    expect(run.stderr).toMatch(message);
    expect(readFileSync(join(p.cwd, "iii.workers.yaml"), "utf8")).toBe(before);
  });

  it("refuses to overwrite a worker without --force, and --debug shows the stack", async () => {
    const p = project();
    expect((await runWorkerCli(["add", "--no-pull", "ghcr.io/acme/app:1"], p)).code).toBe(0);
    const again = await runWorkerCli(["add", "--no-pull", "ghcr.io/acme/app:2", "--debug"], p);
    expect(again.code).toBe(1);
    expect(again.stderr).toContain('worker "app" already exists');
    expect(again.stderr).toMatch(/\n\s+at /);
    expect((await runWorkerCli(["add", "--no-pull", "ghcr.io/acme/app:2", "--force"], p)).code).toBe(0);
    expect(parse(readFileSync(join(p.cwd, "iii.workers.yaml"), "utf8")).workers.app.image).toBe("ghcr.io/acme/app:2");
  });

  it("reports a corrupt state file with its line and column and never replaces it", async () => {
    const p = project();
    const corrupt = "workers:\n  a:\n    image: x\n   bad: [\n";
    writeFileSync(join(p.cwd, "iii.workers.yaml"), corrupt);
    for (const args of [["list"], ["add", "--no-pull", "ghcr.io/acme/app:1"]]) {
      const run = await runWorkerCli(args, p);
      expect(run.code).toBe(1);
      expect(run.stderr).toMatch(/not valid YAML \(line \d+, column \d+\)/);
    }
    expect(readFileSync(join(p.cwd, "iii.workers.yaml"), "utf8")).toBe(corrupt);
    writeFileSync(join(p.cwd, "iii.workers.yaml"), "workers:\n  a:\n    image: x\n    resources: { memory: 12XB }\n");
    const run = await runWorkerCli(["list"], p);
    expect(run.stderr).toContain('workers.a.resources.memory: invalid memory "12XB"');
  });

  it("remove deletes the entry and names a missing one", async () => {
    const p = project();
    expect((await runWorkerCli(["add", "--no-pull", "ghcr.io/acme/app:1"], p)).code).toBe(0);
    expect((await runWorkerCli(["remove", "app"], p)).code).toBe(0);
    expect(parse(readFileSync(join(p.cwd, "iii.workers.yaml"), "utf8")).workers).toEqual({});
    const missing = await runWorkerCli(["remove", "app"], p);
    expect(missing.code).toBe(1);
    expect(missing.stderr).toContain('no worker named "app"');
    expect(existsSync(join(p.cwd, "iii.workers.yaml"))).toBe(true);
  });
});
