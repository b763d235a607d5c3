import { mkdirSync, mkdtempSync, readdirSync, readFileSync, realpathSync, rmSync, writeFileSync } from "node:fs";
import { createRequire } from "node:module";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { afterAll, beforeAll, expect, it } from "vitest";
import { startEngineStandin, type EngineStandin } from "../../../tools/engine-standin/src/index.js";
import { guestMemoryLimits } from "../src/wasm/runner.js";
import { MAX_ENGINE_PAYLOAD_CHARS } from "../src/wasm/engine-link.js";
import { projectCli } from "./wasm/project-cli.js";

// Review rev6h: a handler component's `engine.trigger` payload and `invoke` result cross to the runner's MAIN thread
// as JSON text, and the runner JSON.parse'd them there. That thread has no heap limit and is the one whose timers
// enforce --max-execution-ms, --cpu-budget-ms and the resident-memory bound, so while it parsed nothing was
// enforced: 15 MB of `[{},{},…]` (within a 96 MiB component) took seconds of CPU and grew the runner by ~400 MB
// past its bound before the watchdog could look. A real QuickJS component (componentize-qjs), the real runner,
// the engine stand-in; the runner's own peak RSS (last-exit.json maxRssKb) is the measurement.

const here = dirname(fileURLToPath(import.meta.url));
const COMPONENT_JS = `
import { trigger } from "iii:worker/engine@0.1.0";
export const handler = {
  functions() { return ["bomb::trigger", "bomb::result", "bomb::small"]; },
  invoke(functionId, payload) {
    const n = JSON.parse(payload).n;
    if (functionId === "bomb::result") return "[" + "{},".repeat(n) + "{}]";
    if (functionId === "bomb::small") return JSON.stringify({ ok: n });
    let out;
    try { out = trigger("bomb::elsewhere", "[" + "{},".repeat(n) + "{}]"); } catch (e) { out = "err: " + String(e && (e.payload ?? e.message ?? e)); }
    return JSON.stringify({ trigger: String(out).slice(0, 300) });
  },
};
`;
const MEMORY_MIB = 96;
/** 5M `{},`: 15 MB of JSON text, 5 million objects once parsed. */
const N = 5_000_000;

let root: string;
let project: string;
let engine: EngineStandin;

beforeAll(async () => {
  root = mkdtempSync(join(tmpdir(), "iii-rev6h-payload-"));
  project = join(root, "project");
  mkdirSync(project);
  const jcoDir = realpathSync(join(here, "../node_modules/@bytecodealliance/jco"));
  const { componentize } = (await import(createRequire(join(jcoDir, "package.json")).resolve("componentize-qjs"))) as {
    componentize(o: object): Promise<{ component: Uint8Array }>;
  };
  const wit = join(root, "wit");
  mkdirSync(wit);
  writeFileSync(join(wit, "iii-worker.wit"), readFileSync(join(here, "../wit/iii-worker.wit")));
  const jsPath = join(root, "bomb.js");
  writeFileSync(jsPath, COMPONENT_JS);
  const { component } = await componentize({ witPath: wit, jsSource: COMPONENT_JS, jsPath, world: "wasm-worker" });
  writeFileSync(join(project, "bomb.wasm"), component);
  engine = await startEngineStandin({ port: 0 });
}, 180_000);

afterAll(async () => {
  await cli(["stop", "bomb"]).catch(() => undefined);
  await engine?.close();
  rmSync(root, { recursive: true, force: true });
});

const cli = (args: string[]) => projectCli(project, join(root, "home")).cli(args);
const status = () => projectCli(project, join(root, "home")).status("bomb");

function lastExit(): { maxRssKb: number; reason: string } {
  const managed = join(root, "home", "managed");
  const [key] = readdirSync(managed);
  return JSON.parse(readFileSync(join(managed, key!, "bomb", "last-exit.json"), "utf8")) as { maxRssKb: number; reason: string };
}

const settle = <T>(p: Promise<T>, ms: number): Promise<{ value?: T; error?: string }> =>
  Promise.race([
    p.then(
      (value) => ({ value }),
      (error: Error) => ({ error: String(error?.message ?? error) }),
    ),
    new Promise<{ error: string }>((r) => setTimeout(() => r({ error: "no answer" }), ms)),
  ]);

it("a component's huge engine.trigger payload or invoke result is refused before the runner parses it; the runner stays within its memory bound", async () => {
  expect((await cli(["add", "./bomb.wasm", "--memory", `${MEMORY_MIB}Mi`])).code).toBe(0);
  const started = await cli(["start", "bomb", "--engine-url", engine.url]);
  expect(started.code, started.stderr).toBe(0);
  await engine.waitForFunction("bomb::trigger", { timeoutMs: 30_000 });

  const triggered = await settle(engine.invoke("bomb::trigger", { n: N }), 60_000);
  const returned = await settle(engine.invoke("bomb::result", { n: N }), 60_000);
  // the worker is still up and answers a normal invocation
  const small = await settle(engine.invoke("bomb::small", { n: 7 }), 30_000);
  const now = await status();
  await cli(["stop", "bomb"]);
  const exit = lastExit();
  const bound = guestMemoryLimits(MEMORY_MIB * 2 ** 20).maxRssBytes;

  expect(exit.maxRssKb * 1024, `runner peak RSS ${exit.maxRssKb} KiB (bound ${bound / 1024} KiB); ${exit.reason}`).toBeLessThan(bound);
  expect(now.status, JSON.stringify(now)).toBe("running");
  expect(triggered.value).toMatchObject({ trigger: expect.stringMatching(new RegExp(`more than ${MAX_ENGINE_PAYLOAD_CHARS}`)) });
  expect(returned.error).toMatch(new RegExp(`more than ${MAX_ENGINE_PAYLOAD_CHARS}`));
  expect(small.value).toEqual({ ok: 7 });
}, 240_000);
