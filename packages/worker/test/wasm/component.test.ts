import { mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { setTimeout as sleep } from "node:timers/promises";
import { afterAll, beforeAll, expect, it } from "vitest";
import { componentNew, preview1AdapterCommandPath } from "@bytecodealliance/jco";
import { detectWasmKind } from "../../src/wasm/kind.js";
import { runWorkerCli } from "../helpers.js";
import { exitWith, wat } from "./wat.js";

// A real preview 2 component: a core module wrapped by jco with the WASI preview 1 command adapter, transpiled
// by jco in the controller and run on preview2-shim in the runner.
let root: string;
beforeAll(() => {
  root = mkdtempSync(join(tmpdir(), "iii-wasm-p2-"));
});
afterAll(() => rmSync(root, { recursive: true, force: true }));

async function component(code: number, text: string): Promise<Uint8Array> {
  const adapter = readFileSync(preview1AdapterCommandPath());
  return componentNew(await wat(exitWith(code, text)), [["wasi_snapshot_preview1", adapter]]);
}

it("a component is detected as one, transpiled once (cached by digest), runs on preview2-shim, its exit reported", async () => {
  const project = join(root, "p");
  mkdirSync(project, { recursive: true });
  const env = { III_HOME: join(root, "home") };
  const run = (args: string[]) => runWorkerCli(args, { cwd: project, env });
  writeFileSync(join(project, "ok.wasm"), await component(0, "hello from a component\n"));
  writeFileSync(join(project, "seven.wasm"), await component(7, "exiting 7\n"));
  expect(detectWasmKind(readFileSync(join(project, "ok.wasm")))).toBe("component");
  expect((await run(["add", "./ok.wasm"])).stderr).toMatch(/component \(WASI preview 2\)/);
  expect((await run(["add", "./seven.wasm"])).code).toBe(0);
  const waitEnded = async (name: string) => {
    for (let i = 0; i < 400; i++) {
      const row = (JSON.parse((await run(["list", "--json"])).stdout) as { name: string; status: string; lastExit: { code: number } }[]).find((r) => r.name === name)!;
      if (row.status !== "running" && row.status !== "pending") return row;
      await sleep(50);
    }
    throw new Error(`${name} did not end`);
  };
  const started = await run(["start", "ok"]);
  expect(started.code, started.stderr).toBe(0);
  expect(await waitEnded("ok")).toMatchObject({ status: "completed", lastExit: { code: 0 } });
  expect((await run(["logs", "ok"])).stdout).toBe("hello from a component\n");
  expect(readdirSync(join(root, "home", "wasm-cache"))).toHaveLength(1);
  // a second start reuses the transpilation
  expect((await run(["start", "ok"])).code).toBe(0);
  await waitEnded("ok");
  expect(readdirSync(join(root, "home", "wasm-cache"))).toHaveLength(1);
  // proc_exit(7) through the preview 1 adapter becomes wasi:cli/exit `exit(err)`: preview2-shim reports 1
  expect((await run(["start", "seven"])).code).toBe(0);
  expect(await waitEnded("seven")).toMatchObject({ status: "completed", lastExit: { code: 1 } });
});
