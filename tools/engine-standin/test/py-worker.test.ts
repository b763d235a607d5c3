import { spawn } from "node:child_process";
import { dirname, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { afterEach, describe, expect, it } from "vitest";
import { startEngineStandin, type EngineStandin } from "../src/index.js";

const PY_WORKER_DIR = resolve(dirname(fileURLToPath(import.meta.url)), "../../../examples/py-worker");

describe("engine stand-in with the stdlib Python worker", () => {
  let standin: EngineStandin | undefined;
  afterEach(async () => {
    await standin?.close();
  });

  it("registers py::greet, answers an invocation, reports a handler error, and exits 0 on SIGTERM", async () => {
    standin = await startEngineStandin({ port: 0 });
    const child = spawn("python3", ["-u", "main.py"], {
      cwd: PY_WORKER_DIR,
      env: { ...process.env, III_URL: standin.url, PYTHONDONTWRITEBYTECODE: "1" },
      stdio: ["ignore", "pipe", "pipe"],
    });
    let output = "";
    child.stdout.on("data", (c: Buffer) => (output += c.toString()));
    child.stderr.on("data", (c: Buffer) => (output += c.toString()));
    const exited = new Promise<number | null>((r) => child.once("exit", (code) => r(code)));
    try {
      await standin.waitForFunction("py::greet", { timeoutMs: 20_000 });
      expect(output).toContain("registered py::greet");
      expect(await standin.invoke("py::greet", { name: "python" })).toEqual({
        message: "Hello, python!",
        from: "py-worker",
        pid: child.pid,
      });
      expect(await standin.invoke("py::greet", null)).toMatchObject({ message: "Hello, world!" });
      // A handler that raises comes back as the worker's error body, not a hang or a crash.
      await expect(standin.invoke("py::greet", { name: 5 })).rejects.toMatchObject({
        code: "invocation_failed",
        message: "py::greet: invocation_failed: name must be a string",
      });
      expect(await standin.invoke("py::greet", { name: "again" })).toMatchObject({ message: "Hello, again!" });
      await expect.poll(() => standin!.workers()[0]?.runtime).toBe("python");
      expect(standin.workers()[0]?.name).toBe("py-worker");
    } finally {
      child.kill("SIGTERM");
    }
    expect(await exited).toBe(0);
  });
});
