import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { decodeWorkersFile } from "../../src/state/model.js";
import { runWorkerCli } from "../helpers.js";

let dir: string;
beforeAll(() => {
  dir = mkdtempSync(join(tmpdir(), "iii-dup-publish-"));
});
afterAll(() => rmSync(dir, { recursive: true, force: true }));

function project(yaml: string): { cwd: string; env: NodeJS.ProcessEnv } {
  const cwd = mkdtempSync(join(dir, "p-"));
  writeFileSync(join(cwd, "iii.workers.yaml"), yaml);
  return { cwd, env: { III_HOME: join(cwd, "home") } };
}

describe("the state file's decoder refuses what cannot hold in one worker", () => {
  it("a host port published twice, with the field path", () => {
    expect(() => decodeWorkersFile({ workers: { a: { image: "dir:/r" }, w: { image: "dir:/r", ports: ["9000:90", "8080:80", "8080:81"] } } })).toThrow(
      "workers.w.ports[2]: host port 8080 is already published (8080:80)",
    );
  });

  it("one guest path shared twice, normalized as a mount is (/data/, /data/.)", () => {
    for (const second of ["/s2:/data/", "/s2:/data/.:ro", "/s2://data"]) {
      expect(() => decodeWorkersFile({ workers: { w: { image: "dir:/r", mounts: ["/s1:/data", second] } } }), second).toThrow(
        "workers.w.mounts[1]: guest path /data is already shared (from /s1)",
      );
    }
  });

  it("one guest port behind two host ports, nested guest paths, and one port in two workers still load", () => {
    const file = decodeWorkersFile({
      workers: {
        a: { image: "dir:/r", ports: ["8080:80", "8081:80"], mounts: ["/s1:/data", "/s2:/data/sub:ro"] },
        b: { image: "dir:/r", ports: ["8080:80"] },
      },
    });
    expect(file.workers.a!.ports.map((p) => p.host)).toEqual([8080, 8081]);
  });

  it("a hand-edited file with a duplicate fails at load with one line (list, start), not after a boot", async () => {
    const p = project("workers:\n  w:\n    image: dir:/nowhere\n    ports:\n      - 8080:80\n      - 8080:81\n");
    for (const args of [["list"], ["start", "w"]]) {
      const run = await runWorkerCli(args, p);
      expect(run.code, args.join(" ")).toBe(1);
      expect(run.stderr.trim().split("\n"), args.join(" ")).toEqual([
        `iii-worker: ${join(p.cwd, "iii.workers.yaml")}: workers.w.ports[1]: host port 8080 is already published (8080:80) [StateFileCorrupt]`,
      ]);
    }
  });
});

describe("add", () => {
  it("keeps its own wording for the same rule", async () => {
    const p = project("workers: {}\n");
    const ports = await runWorkerCli(["add", "ghcr.io/acme/w:1", "--no-pull", "-p", "8080:80", "-p", "8080:81"], p);
    expect(ports.stderr.trim()).toBe("iii-worker: invalid --port 8080:81: host port 8080 is already published (8080:80) [InvalidOption]");
  });

  it("refuses a host port another worker publishes, naming it; nothing written; --force on the same name is fine", async () => {
    const p = project("workers:\n  api:\n    image: ghcr.io/acme/api:1\n    ports: [\"8080:80\"]\n");
    const before = readFileSync(join(p.cwd, "iii.workers.yaml"), "utf8");
    const run = await runWorkerCli(["add", "ghcr.io/acme/web:1", "--no-pull", "-p", "9090:90", "-p", "8080:81"], p);
    expect(run.code).toBe(1);
    expect(run.stderr.trim()).toBe(
      'iii-worker: invalid --port 8080:81: host port 8080 is already published by worker "api" (8080:80); the two could not run together [InvalidOption]',
    );
    expect(readFileSync(join(p.cwd, "iii.workers.yaml"), "utf8")).toBe(before);
    const replaced = await runWorkerCli(["add", "ghcr.io/acme/api:2", "--no-pull", "--name", "api", "--force", "-p", "8080:80"], p);
    expect(replaced.code, replaced.stderr).toBe(0);
    const other = await runWorkerCli(["add", "ghcr.io/acme/web:1", "--no-pull", "-p", "8081:80"], p);
    expect(other.code, other.stderr).toBe(0);
  });
});
