import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { runWorkerCli } from "../helpers.js";

const root = mkdtempSync(join(tmpdir(), "iii-guest-paths-"));
afterAll(() => rmSync(root, { recursive: true, force: true }));

function project(): { cwd: string; env: NodeJS.ProcessEnv; rootfs: string; data: string } {
  const cwd = mkdtempSync(join(root, "p-"));
  const rootfs = join(cwd, "rootfs");
  const data = join(cwd, "data");
  mkdirSync(rootfs);
  mkdirSync(data);
  return { cwd, env: { III_HOME: join(cwd, "home") }, rootfs, data };
}

describe("add refuses what would break the guest, changing nothing", () => {
  it("refuses guest mount targets that hide / or /.iii, after normalising // and trailing slashes", async () => {
    const p = project();
    for (const target of ["/", "//", "/.iii", "/.iii/", "//.iii", "/.iii/x", "/./.iii/y", "/a/../.iii", "/x/.."]) {
      const r = await runWorkerCli(["add", `dir:${p.rootfs}`, "--name", "w", "-m", `${p.data}:${target}`, "--", "true"], p);
      expect(r.code, `${target}: ${r.stderr}`).not.toBe(0);
      expect(r.stderr.trim().split("\n"), target).toHaveLength(1);
      expect(r.stderr, target).toMatch(/^iii-worker: invalid mount ".*": the guest path (\/|\/\.iii\S*) would hide|the guest path may not contain "\.\."/);
      expect(existsSync(join(p.cwd, "iii.workers.yaml")), target).toBe(false);
    }
    const ok = await runWorkerCli(["add", `dir:${p.rootfs}`, "--name", "w", "-m", `${p.data}:/.iiix`, "-m", `${p.data}:/data/.iii`, "--", "true"], p);
    expect(ok.code, ok.stderr).toBe(0);
  });

  it("refuses a writable share that holds the project's iii.workers.yaml, at add and (hand-edited) at start", async () => {
    const p = project();
    // The guest would rewrite its own entry there (say `-m /:/host`) and the next start would honour it.
    const add = await runWorkerCli(["add", `dir:${p.rootfs}`, "--name", "w", "-m", `${p.cwd}:/app`, "--", "true"], p);
    expect(add.code).not.toBe(0);
    expect(add.stderr).toMatch(/^iii-worker: cannot share .* writable: it holds .*iii\.workers\.yaml.* \[InvalidOption\]\n$/);
    expect(existsSync(join(p.cwd, "iii.workers.yaml"))).toBe(false);
    expect((await runWorkerCli(["add", `dir:${p.rootfs}`, "--name", "w", "-m", `${p.cwd}:/app:ro`, "-m", `${p.data}:/data`, "--", "true"], p)).code).toBe(0);
    const file = join(p.cwd, "iii.workers.yaml");
    writeFileSync(file, readFileSync(file, "utf8").replace(`${p.cwd}:/app:ro`, `${p.cwd}:/app`));
    const start = await runWorkerCli(["start", "w"], p);
    expect(start.code).not.toBe(0);
    expect(start.stderr).toMatch(/cannot share .* writable: it holds .*iii\.workers\.yaml/);
  });

  it("a hand-edited iii.workers.yaml with such a mount is refused at start, with one line", async () => {
    const p = project();
    expect((await runWorkerCli(["add", `dir:${p.rootfs}`, "--name", "w", "-m", `${p.data}:/data`, "--", "true"], p)).code).toBe(0);
    const file = join(p.cwd, "iii.workers.yaml");
    const edited = readFileSync(file, "utf8").replace(`${p.data}:/data`, `${p.data}:/.iii`);
    writeFileSync(file, edited);
    const r = await runWorkerCli(["start", "w"], p);
    expect(r.code).not.toBe(0);
    expect(r.stderr.trim().split("\n")).toHaveLength(1);
    expect(r.stderr).toContain("would hide /.iii");
    expect(readFileSync(file, "utf8")).toBe(edited);
    expect(existsSync(join(p.env.III_HOME!, "managed"))).toBe(false);
  });

  it("refuses --env III_ISOLATION / III_WORKER_NAME (iii sets them), with one line", async () => {
    const p = project();
    for (const env of ["III_ISOLATION=none", "III_WORKER_NAME=other"]) {
      const r = await runWorkerCli(["add", `dir:${p.rootfs}`, "--name", "w", "-e", env, "--", "true"], p);
      expect(r.code).not.toBe(0);
      expect(r.stderr.trim().split("\n")).toHaveLength(1);
      expect(r.stderr).toMatch(/^iii-worker: invalid --env: III_(ISOLATION|WORKER_NAME) is set by iii for every worker .*cannot be overridden \[InvalidOption\]\n$/);
      expect(existsSync(join(p.cwd, "iii.workers.yaml"))).toBe(false);
    }
  });

  it("exec -e III_ISOLATION=… is refused before anything runs", async () => {
    const p = project();
    expect((await runWorkerCli(["add", `dir:${p.rootfs}`, "--name", "w", "--", "true"], p)).code).toBe(0);
    const r = await runWorkerCli(["exec", "w", "-e", "III_ISOLATION=x", "--", "true"], p);
    expect(r.code).not.toBe(0);
    expect(r.stderr).toMatch(/^iii-worker: invalid --env: III_ISOLATION is set by iii/);
  });

  it("start --capture into a place that cannot be written is refused with one line, before anything starts", async () => {
    const p = project();
    expect((await runWorkerCli(["add", `dir:${p.rootfs}`, "--name", "w", "--", "true"], p)).code).toBe(0);
    for (const file of ["/proc/nope/x.pcap", p.data]) {
      const r = await runWorkerCli(["start", "w", "--capture", file], p);
      expect(r.code).not.toBe(0);
      expect(r.stderr.trim().split("\n")).toHaveLength(1);
      expect(r.stderr).toMatch(/^iii-worker: invalid --capture .*(cannot write|not a regular file)/);
      expect(existsSync(join(p.env.III_HOME!, "managed"))).toBe(false);
    }
  });

  it("add prints the command the worker will run: the one given after --", async () => {
    const p = project();
    const r = await runWorkerCli(["add", `dir:${p.rootfs}`, "--name", "w", "--", "sh", "-c", "echo hi"], p);
    expect(r.code, r.stderr).toBe(0);
    expect(r.stderr).toContain('runs ["sh","-c","echo hi"]');
  });
});
