import { spawn } from "node:child_process";
import { chmodSync, mkdtempSync, readFileSync, rmSync, writeFileSync, existsSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { afterAll, beforeAll, describe, expect, it } from "vitest";

const CLI = fileURLToPath(new URL("../dist/cli.js", import.meta.url));
let dir: string;

function runIii(args: string[], env: NodeJS.ProcessEnv): Promise<{ code: number | null; stdout: string; stderr: string; child: ReturnType<typeof spawn> }> & { child: ReturnType<typeof spawn> } {
  const child = spawn(process.execPath, [CLI, ...args], { env: { ...process.env, ...env }, stdio: ["ignore", "pipe", "pipe"] });
  let stdout = "";
  let stderr = "";
  child.stdout!.on("data", (d) => (stdout += d));
  child.stderr!.on("data", (d) => (stderr += d));
  const done = new Promise<{ code: number | null; stdout: string; stderr: string; child: typeof child }>((resolve) =>
    child.on("close", (code) => resolve({ code, stdout, stderr, child })),
  ) as Promise<{ code: number | null; stdout: string; stderr: string; child: typeof child }> & { child: typeof child };
  done.child = child;
  return done;
}

function script(name: string, body: string): string {
  const path = join(dir, name);
  writeFileSync(path, `#!/bin/sh\n${body}\n`);
  chmodSync(path, 0o755);
  return path;
}

beforeAll(() => {
  dir = mkdtempSync(join(tmpdir(), "iii-engine-test-"));
});
afterAll(() => rmSync(dir, { recursive: true, force: true }));

describe("iii worker shim", () => {
  it("passes arguments verbatim and the exit code through", async () => {
    const argsFile = join(dir, "args");
    const bin = script("exit42", `printf '%s\\n' "$@" > ${argsFile}; exit 42`);
    const result = await runIii(["worker", "add", "a b", "--env", "X=1 2", ""], { III_WORKER_BIN: bin });
    expect(result.code).toBe(42);
    expect(readFileSync(argsFile, "utf8")).toBe("add\na b\n--env\nX=1 2\n\n");
  });

  it("reports death by signal n as 128+n", async () => {
    const bin = script("selfkill", "kill -KILL $$");
    const result = await runIii(["worker", "x"], { III_WORKER_BIN: bin });
    expect(result.code).toBe(137);
  });

  it("forwards SIGTERM to iii-worker", async () => {
    const marker = join(dir, "got-term");
    const ready = join(dir, "ready");
    const bin = script("trap", `trap 'echo term > ${marker}; exit 5' TERM; touch ${ready}; while :; do sleep 0.05; done`);
    const running = runIii(["worker", "wait"], { III_WORKER_BIN: bin });
    const deadline = Date.now() + 10_000;
    while (!existsSync(ready) && Date.now() < deadline) await new Promise((r) => setTimeout(r, 20));
    running.child.kill("SIGTERM");
    const result = await running;
    expect(readFileSync(marker, "utf8").trim()).toBe("term");
    expect(result.code).toBe(5);
  });

  it("prints one line and exits 127 when iii-worker is missing", async () => {
    const result = await runIii(["worker", "list"], { III_WORKER_BIN: join(dir, "nope") });
    expect(result.code).toBe(127);
    expect(result.stderr.trim().split("\n")).toHaveLength(1);
    expect(result.stderr).toContain("iii-worker not found");
  });

  it("runs the real iii-worker from the installed @iii/worker package", async () => {
    const env: NodeJS.ProcessEnv = { ...process.env, III_HOME: join(dir, "home") };
    delete env.III_WORKER_BIN;
    const help = await runIii(["worker", "--help"], env);
    expect(help.code).toBe(0);
    expect(help.stdout).toContain("iii managed worker runtime");
    const unknown = await runIii(["worker", "frobnicate"], env);
    expect(unknown.code).not.toBe(0);
    expect(unknown.stderr).toContain("unknown command 'frobnicate'");
  });

  it("runs a Node iii-worker in its own process (no second Node), with argv and the exit status as if spawned", async () => {
    const bin = join(dir, "worker.mjs");
    writeFileSync(
      bin,
      `import { writeFileSync } from "node:fs";\nwriteFileSync(${JSON.stringify(join(dir, "in-process"))}, JSON.stringify({ pid: process.pid, argv: process.argv.slice(1) }));\nprocess.exitCode = 7;\n`,
    );
    const running = runIii(["worker", "exec", "w", "--", "true"], { III_WORKER_BIN: bin });
    const result = await running;
    expect(result.code).toBe(7);
    const seen = JSON.parse(readFileSync(join(dir, "in-process"), "utf8")) as { pid: number; argv: string[] };
    expect(seen.pid).toBe(running.child.pid);
    expect(seen.argv).toEqual([bin, "exec", "w", "--", "true"]);
  });

  it("the real iii-worker in the shim's process prints its errors with their code", async () => {
    const env: NodeJS.ProcessEnv = { ...process.env, III_HOME: join(dir, "home") };
    delete env.III_WORKER_BIN;
    const run = await runIii(["worker", "inspect", "ghost"], env);
    expect(run.code).toBe(1);
    expect(run.stderr).toBe('iii-worker: no worker named "ghost" in iii.workers.yaml [WorkerNotFound]\n');
  });
});

describe("iii --version", () => {
  it("prints the package version and exits 0", async () => {
    const pkg = JSON.parse(readFileSync(fileURLToPath(new URL("../package.json", import.meta.url)), "utf8")) as { version: string };
    for (const flag of ["--version", "-V"]) {
      const result = await runIii([flag], {});
      expect(result).toMatchObject({ code: 0, stdout: `${pkg.version}\n`, stderr: "" });
    }
  });
});
