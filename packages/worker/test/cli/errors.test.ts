import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { FilesystemError } from "@iii/filesystem";
import { NetworkError, PolicyDeniedError } from "@iii/network";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { describeError, isErrorCode, toIiiError, IiiError } from "../../src/errors.js";
import { runWorkerCli } from "../helpers.js";

let dir: string;
beforeAll(() => {
  dir = mkdtempSync(join(tmpdir(), "iii-errors-"));
});
afterAll(() => rmSync(dir, { recursive: true, force: true }));

const env = () => ({ III_HOME: join(dir, "home") });

describe("every error is one line with its stable code", () => {
  it("an IiiError prints `iii-worker: <message> [<Code>]` and exits with its mapped status", async () => {
    const run = await runWorkerCli(["inspect", "ghost"], { cwd: dir, env: env() });
    expect(run.code).toBe(1);
    expect(run.stdout).toBe("");
    expect(run.stderr).toBe('iii-worker: no worker named "ghost" in iii.workers.yaml [WorkerNotFound]\n');
  });

  it.each([
    [["--bogus"], "iii-worker: unknown option '--bogus' [UsageError]\n"],
    [["frobnicate"], "iii-worker: unknown command 'frobnicate' [UsageError]\n"],
    [["list", "--nope"], "iii-worker: unknown option '--nope' [UsageError]\n"],
    [["logs"], "iii-worker: missing required argument 'name' [UsageError]\n"],
  ])("commander's usage error %j is one line, code UsageError, exit 2", async (args, line) => {
    const run = await runWorkerCli(args, { cwd: dir, env: env() });
    expect(run.code).toBe(2);
    expect(run.stderr).toBe(line);
    expect(run.stdout).toBe("");
  });

  it("a suggestion from commander stays on the same line", async () => {
    const run = await runWorkerCli(["list", "--jsn"], { cwd: dir, env: env() });
    expect(run.code).toBe(2);
    expect(run.stderr.trimEnd().split("\n")).toHaveLength(1);
    expect(run.stderr).toMatch(/^iii-worker: unknown option '--jsn' \(Did you mean --json\?\) \[UsageError\]$/m);
  });

  it("with --json the error is {error: {code, message}} on stdout and stderr stays empty", async () => {
    const run = await runWorkerCli(["doctor", "--json", "--bogus"], { cwd: dir, env: env() });
    expect(run.code).toBe(2);
    expect(run.stderr).toBe("");
    expect(JSON.parse(run.stdout)).toEqual({ error: { code: "UsageError", message: "unknown option '--bogus'" } });
    const notFound = await runWorkerCli(["logs", "ghost", "--json"], { cwd: dir, env: env() });
    expect(notFound.code).toBe(2); // logs has no --json: still JSON, as asked
    expect(JSON.parse(notFound.stdout).error.code).toBe("UsageError");
  });

  it("a failing command with --json reports its own code as JSON", async () => {
    const p = mkdtempSync(join(dir, "p-"));
    const { writeFileSync } = await import("node:fs");
    writeFileSync(join(p, "iii.workers.yaml"), "workers:\n  a:\n    image: x\n   bad: [\n");
    const run = await runWorkerCli(["list", "--json"], { cwd: p, env: env() });
    expect(run.code).toBe(1);
    expect(run.stderr).toBe("");
    const body = JSON.parse(run.stdout) as { error: { code: string; message: string } };
    expect(body.error.code).toBe("StateFileCorrupt");
    expect(body.error.message).toMatch(/not valid YAML \(line \d+, column \d+\)/);
    expect(Object.keys(body)).toEqual(["error"]);
    expect(Object.keys(body.error)).toEqual(["code", "message"]);
  });

  it("a system error keeps its errno code through the real CLI (exit 1: the environment, not a bug)", async () => {
    const { mkdirSync, writeFileSync } = await import("node:fs");
    const { workerPaths } = await import("../../src/paths.js");
    const p = mkdtempSync(join(dir, "p-"));
    writeFileSync(join(p, "iii.workers.yaml"), "workers:\n  web:\n    image: ghcr.io/acme/web:1\n");
    const paths = workerPaths("web", env(), p);
    mkdirSync(paths.stdoutLog, { recursive: true }); // a directory where the log file should be
    const run = await runWorkerCli(["logs", "web", "--stdout"], { cwd: p, env: env() });
    expect(run.code).toBe(1);
    expect(run.stderr).toMatch(/^iii-worker: EISDIR: illegal operation on a directory, read \[EISDIR\]\n$/);
  });

  it("--debug adds the stack after the one line", async () => {
    const run = await runWorkerCli(["inspect", "ghost", "--debug"], { cwd: dir, env: env() });
    expect(run.code).toBe(1);
    const [first, ...rest] = run.stderr.trimEnd().split("\n");
    expect(first).toBe('iii-worker: no worker named "ghost" in iii.workers.yaml [WorkerNotFound]');
    expect(rest.join("\n")).toMatch(/^IiiError: no worker named[\s\S]*\n\s+at /);
  });
});

describe("describeError", () => {
  it("keeps the codes of other packages' typed errors (exit 1), and Node's errno codes", () => {
    expect(describeError(new FilesystemError("MountFailed", "fusermount: failed"))).toEqual({ code: "MountFailed", message: "fusermount: failed", exitCode: 1 });
    expect(describeError(new NetworkError("TransportError", "socket closed"))).toEqual({ code: "TransportError", message: "socket closed", exitCode: 1 });
    expect(describeError(new PolicyDeniedError("10.0.0.1:80 denied", "deny 10.0.0.0/8")).code).toBe("PolicyDenied");
    const errno = Object.assign(new Error("EACCES: permission denied, open '/x'"), { code: "EACCES" });
    expect(describeError(errno)).toEqual({ code: "EACCES", message: "EACCES: permission denied, open '/x'", exitCode: 1 });
  });

  it("gives anything else the generic code Internal and exit 70; IiiError keeps its own mapping", () => {
    expect(describeError(new TypeError("x is undefined"))).toEqual({ code: "Internal", message: "internal error: x is undefined", exitCode: 70 });
    const nodeBug = Object.assign(new TypeError('The "path" argument must be of type string'), { code: "ERR_INVALID_ARG_TYPE" });
    expect(describeError(nodeBug).code).toBe("Internal");
    expect(describeError("thrown string")).toEqual({ code: "Internal", message: "internal error: thrown string", exitCode: 70 });
    expect(describeError(new IiiError("UsageError", "bad\nthing"))).toEqual({ code: "UsageError", message: "bad thing", exitCode: 2 });
    expect(describeError(new IiiError("Internal", "oops")).exitCode).toBe(70);
  });
});

describe("toIiiError", () => {
  it("keeps a foreign package's code and the error as cause; an errno error or a bug takes the fallback", () => {
    const fsError = new FilesystemError("MountpointBusy", "/m is busy");
    const fromFs = toIiiError(fsError, "VmBootFailed");
    expect([fromFs.code, fromFs.message, fromFs.cause, fromFs.exitCode]).toEqual(["MountpointBusy", "/m is busy", fsError, 1]);
    expect(toIiiError(new NetworkError("InvalidConfig", "cannot publish"), "VmBootFailed").code).toBe("InvalidConfig");
    const errno = Object.assign(new Error("EACCES: permission denied"), { code: "EACCES" });
    expect(toIiiError(errno, "VmBootFailed")).toMatchObject({ code: "VmBootFailed", cause: errno });
    expect(toIiiError(new TypeError("x is undefined")).code).toBe("Internal");
    const own = new IiiError("WorkerNotFound", "no");
    expect(toIiiError(own, "VmBootFailed")).toBe(own);
  });

  it("lets a boot report carry worker codes and packages' PascalCase codes only", () => {
    expect(["MountFailed", "InvalidConfig", "VmBootFailed"].every(isErrorCode)).toBe(true);
    expect(["EACCES", "MOUNT_FAILED", "ERR_X", "", 7].some(isErrorCode)).toBe(false);
  });
});
