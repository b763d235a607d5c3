import { existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { setTimeout as sleep } from "node:timers/promises";
import { afterAll, beforeAll, expect, it } from "vitest";
import { componentNew, preview1AdapterCommandPath } from "@bytecodealliance/jco";
import { detectWasmKind } from "../../src/wasm/kind.js";
import { runWorkerCli } from "../helpers.js";
import { exitWith, flood, O_CREAT, openAt, RIGHT_FD_READ, RIGHT_FD_WRITE, wat } from "./wat.js";

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

it("a component reaches only its dirs: .. out fails (exit 1 via the adapter), a write into a readOnly dir is refused by the permission model (failed), a writable dir works", async () => {
  const project = join(root, "fs");
  mkdirSync(join(project, "ro"), { recursive: true });
  mkdirSync(join(project, "rw"), { recursive: true });
  writeFileSync(join(project, "secret.txt"), "secret");
  writeFileSync(join(project, "ro", "inside.txt"), "ok");
  const env = { III_HOME: join(root, "home") };
  const run = (args: string[]) => runWorkerCli(args, { cwd: project, env });
  const adapter = readFileSync(preview1AdapterCommandPath());
  let i = 0;
  const exitOf = async (source: string, mount: string) => {
    const name = `fs${++i}`;
    writeFileSync(join(project, `${name}.wasm`), await componentNew(await wat(source), [["wasi_snapshot_preview1", adapter]]));
    expect((await run(["add", `./${name}.wasm`, "-m", mount])).code).toBe(0);
    const started = await run(["start", name]);
    expect(started.code, started.stderr).toBe(0);
    for (let t = 0; t < 400; t++) {
      const row = (JSON.parse((await run(["list", "--json"])).stdout) as { name: string; status: string; lastExit: { code: number; reason: string } }[]).find((r) => r.name === name)!;
      if (row.status !== "running" && row.status !== "pending") return row;
      await sleep(50);
    }
    throw new Error(`${name} did not end`);
  };
  const ro = `${join(project, "ro")}:/ro:ro`;
  expect(await exitOf(openAt("inside.txt", 0, RIGHT_FD_READ), ro)).toMatchObject({ status: "completed", lastExit: { code: 0 } });
  expect(await exitOf(openAt("../secret.txt", 0, RIGHT_FD_READ), ro)).toMatchObject({ lastExit: { code: 1 } });
  // preview2-shim has no read-only preopens: the runner's permission model refuses the write, which the shim
  // surfaces as an exception, so the run fails naming the path (before the fix for the shim's I/O worker, which
  // is created with execArgv [] and so escaped the permission model, this file was created)
  expect(await exitOf(openAt("new.txt", O_CREAT, RIGHT_FD_WRITE), ro)).toMatchObject({
    status: "failed",
    lastExit: { code: null, reason: expect.stringMatching(/--allow-fs-write.*ro\/new\.txt/) },
  });
  expect(existsSync(join(project, "ro", "new.txt"))).toBe(false);
  expect(await exitOf(openAt("new.txt", O_CREAT, RIGHT_FD_WRITE), `${join(project, "rw")}:/rw`)).toMatchObject({ status: "completed", lastExit: { code: 0 } });
  expect(existsSync(join(project, "rw", "new.txt"))).toBe(true);
});

it("a component's stdout flood is cut at the cap: the log stays bounded, one marker line, the run completes", async () => {
  const project = join(root, "flood");
  mkdirSync(project, { recursive: true });
  const cap = 1024 * 1024;
  const env = { III_HOME: join(root, "home"), III_WASM_STDIO_CAP_BYTES: String(cap) };
  const run = (args: string[]) => runWorkerCli(args, { cwd: project, env });
  const adapter = readFileSync(preview1AdapterCommandPath());
  writeFileSync(join(project, "flood.wasm"), await componentNew(await wat(flood(512)), [["wasi_snapshot_preview1", adapter]])); // 32 MiB offered
  expect((await run(["add", "./flood.wasm"])).code).toBe(0);
  expect((await run(["start", "flood"])).code).toBe(0);
  let row: { status: string; lastExit: { code: number; maxRssKb: number } } | undefined;
  for (let i = 0; i < 600; i++) {
    row = (JSON.parse((await run(["list", "--json"])).stdout) as { name: string; status: string; lastExit: { code: number; maxRssKb: number } }[]).find((r) => r.name === "flood");
    if (row && row.status !== "running" && row.status !== "pending") break;
    await sleep(50);
  }
  expect(row).toMatchObject({ status: "completed", lastExit: { code: 0 } });
  const log = readFileSync(join(root, "home", "managed", readdirSync(join(root, "home", "managed")).find((k) => existsSync(join(root, "home", "managed", k, "flood")))!, "flood", "logs", "stdout.log"), "utf8");
  expect(log.length).toBeLessThanOrEqual(cap + 100);
  expect(log.match(/\[iii: stdout truncated after \d+ bytes\]/g)).toHaveLength(1);
  expect(log.startsWith("A".repeat(1000))).toBe(true);
});
