import { execFile } from "node:child_process";
import { mkdirSync, mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { setTimeout as sleep } from "node:timers/promises";
import { fileURLToPath } from "node:url";
import { promisify } from "node:util";
import { afterAll, beforeAll, expect, it } from "vitest";
import { startEngineStandin, type EngineStandin, type StandinEvent } from "../../../../tools/engine-standin/src/index.js";
import { projectCli } from "./project-cli.js";

// The example component (examples/wasm-worker, JavaScript componentized by jco) joins the engine stand-in: the
// runner registers what its `handler.functions()` lists through the real iii-sdk, invocations reach
// `handler.invoke`, and the component's `engine.trigger` import reaches the engine.
const REPO = fileURLToPath(new URL("../../../../", import.meta.url));
let root: string;
let project: string;
let engine: EngineStandin;
const events: StandinEvent[] = [];

beforeAll(async () => {
  root = mkdtempSync(join(tmpdir(), "iii-wasm-engine-"));
  project = join(root, "project");
  mkdirSync(project);
  await promisify(execFile)(process.execPath, [join(REPO, "examples/wasm-worker/build.mjs"), join(project, "greet.wasm")], { timeout: 170_000 });
  engine = await startEngineStandin({ port: 0 });
  engine.events.on("event", (e) => events.push(e));
}, 180_000);

afterAll(async () => {
  await cli(["stop", "greet"]).catch(() => undefined);
  await engine?.close();
  rmSync(root, { recursive: true, force: true });
});

const cli = (args: string[]) => projectCli(project, join(root, "home")).cli(args);
const status = () => projectCli(project, join(root, "home")).status("greet");

it("the example component registers its functions with the engine and answers invocations; engine.trigger reaches the engine", async () => {
  expect((await cli(["add", "./greet.wasm"])).code).toBe(0);
  const started = await cli(["start", "greet", "--engine-url", engine.url]);
  expect(started.code, started.stderr).toBe(0);

  await engine.waitForFunction("wasm::greet", { timeoutMs: 30_000 });
  await engine.waitForFunction("wasm::functions", { timeoutMs: 5_000 });
  expect(await engine.invoke("wasm::greet", { name: "test" })).toEqual({ message: "Hello, test!", from: "wasm-worker" });
  // the component calls the engine's own function list through its `iii:worker/engine` import
  expect(await engine.invoke("wasm::functions", {})).toEqual({ functions: ["wasm::functions", "wasm::greet"] });
  // the engine sees a sandboxed worker with its name, as for a VM worker
  await expect.poll(() => engine.workers()[0]?.isolation, { timeout: 5_000 }).toBe("wasm");
  expect(engine.workers()[0]).toMatchObject({ name: "greet", runtime: "node" });
  expect((await status()).status).toBe("running");

  // stopping the worker ends its engine connection: the engine forgets its functions
  expect((await cli(["stop", "greet"])).code).toBe(0);
  expect(await status()).toMatchObject({ status: "stopped" });
  await expect.poll(() => engine.functions().length, { timeout: 5_000 }).toBe(0);
  expect(events).toContainEqual(expect.objectContaining({ kind: "worker-disconnected" }));
}, 120_000);

it("with no engine listening, a handler component keeps running (the SDK reconnects) and stops cleanly", async () => {
  // nothing listens on this port: the SDK keeps reconnecting; the worker runs (the engine may come later)
  const started = await cli(["start", "greet", "--engine-url", "ws://127.0.0.1:9"]);
  expect(started.code, started.stderr).toBe(0);
  await sleep(500);
  expect((await status()).status).toBe("running");
  expect((await cli(["stop", "greet"])).code).toBe(0);
  expect(await status()).toMatchObject({ status: "stopped", lastExit: { reason: "stopped" } });
}, 60_000);
