import { execFile } from "node:child_process";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { setTimeout as sleep } from "node:timers/promises";
import { fileURLToPath } from "node:url";
import { promisify } from "node:util";
import { afterAll, expect, it } from "vitest";
import { runWorkerCli } from "../helpers.js";

// examples/wasm-p1, built by its own script and run as the README shows.
const REPO = fileURLToPath(new URL("../../../../", import.meta.url));
const root = mkdtempSync(join(tmpdir(), "iii-wasm-examples-"));
afterAll(() => rmSync(root, { recursive: true, force: true }));

it("the preview 1 example runs to completion with its arguments: completed (exit 0), its lines in the logs", async () => {
  await promisify(execFile)(process.execPath, [join(REPO, "examples/wasm-p1/build.mjs"), join(root, "hello.wasm")]);
  const cli = (args: string[]) => runWorkerCli(args, { cwd: root, env: { III_HOME: join(root, "home") } });
  const added = await cli(["add", "./hello.wasm", "--", "one", "two words"]);
  expect(added.stderr).toMatch(/WASM core module \(WASI preview 1\)/);
  expect((await cli(["start", "hello"])).code).toBe(0);
  let status = "";
  for (let i = 0; i < 200 && !status.startsWith("completed"); i++) {
    status = (JSON.parse((await cli(["list", "--json"])).stdout) as { status: string }[])[0]!.status;
    await sleep(50);
  }
  expect((await cli(["list"])).stdout).toMatch(/hello\s+wasm:\S+hello\.wasm\s+completed \(exit 0\)/);
  expect((await cli(["logs", "hello"])).stdout).toBe("hello from a WASI preview 1 module\narg: one\narg: two words\n");
});
