import { cpSync, existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, realpathSync, rmSync, writeFileSync } from "node:fs";
import { createRequire } from "node:module";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { setTimeout as sleep } from "node:timers/promises";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { boundedDenialLog, MAX_DENIAL_LINES } from "../../src/wasm/component-guest.js";
import { allowedComponentImports, assertTranspiledImports, moduleSpecifiersOf } from "../../src/wasm/transpile.js";
import { runWorkerCli } from "../helpers.js";

// Hostile components through the real CLI. A component may import only the WASI interfaces preview2-shim implements and iii:worker/engine. Review s16: jco
// turned any other import into an ES import of its name, and a component importing `vm` ran JavaScript of its
// choice in the runner, with the host's environment (measured: it printed a secret of the CLI's environment).

const here = dirname(fileURLToPath(import.meta.url));
const fixture = join(here, "fixtures/escape-js");
let root: string;
beforeAll(() => {
  root = mkdtempSync(join(tmpdir(), "iii-wasm-imports-"));
});
afterAll(() => rmSync(root, { recursive: true, force: true }));

/** A JavaScript guest componentized with jco's QuickJS backend against `world` of `witFile`. */
/** Waits (up to 5 s) until `name` is neither running nor pending in `list --json`. */
async function untilNotRunning(cli: (args: string[]) => Promise<{ stdout: string }>, name: string): Promise<void> {
  for (let i = 0; i < 100; i++) {
    const row = (JSON.parse((await cli(["list", "--json"])).stdout) as { name: string; status: string }[]).find((r) => r.name === name)!;
    if (row.status !== "running" && row.status !== "pending") return;
    await sleep(50);
  }
}

async function buildJsComponent(witFile: string, world: string, jsPath: string): Promise<Uint8Array> {
  const jcoDir = realpathSync(join(here, "../../node_modules/@bytecodealliance/jco"));
  const jcoRequire = createRequire(join(jcoDir, "package.json"));
  const builtin = join(jcoDir, "lib/wit/builtin/0.2.12");
  const wit = join(root, `wit-${world}`);
  mkdirSync(join(wit, "deps"), { recursive: true });
  cpSync(witFile, join(wit, "world.wit"));
  for (const dep of ["wasi-cli", "wasi-clocks", "wasi-filesystem", "wasi-io", "wasi-random", "wasi-sockets"]) cpSync(join(builtin, dep), join(wit, "deps", dep), { recursive: true });
  const { componentize } = (await import(jcoRequire.resolve("componentize-qjs"))) as { componentize(o: object): Promise<{ component: Uint8Array }> };
  return (await componentize({ witPath: wit, jsSource: readFileSync(jsPath, "utf8"), jsPath, world })).component;
}

it("a component importing anything but WASI and iii:worker/engine is refused at start; its JavaScript never runs", async () => {
  const project = join(root, "p");
  mkdirSync(project, { recursive: true });
  writeFileSync(join(project, "escape.wasm"), await buildJsComponent(join(fixture, "world.wit"), "escape", join(fixture, "escape.js")));
  const env = { III_HOME: join(root, "home"), III_TEST_HOST_SECRET: "host-secret-s16" };
  const cli = (args: string[]) => runWorkerCli(args, { cwd: project, env });
  expect((await cli(["add", "./escape.wasm", "--name", "escape"])).code).toBe(0);
  const started = await cli(["start", "escape"]);
  await untilNotRunning(cli, "escape");
  const logs = await cli(["logs", "escape"]);
  expect(logs.stdout).not.toContain("host-secret-s16");
  expect(logs.stdout).not.toContain("escaped");
  expect(started.code).toBe(1);
  expect(started.stderr).toMatch(/the component imports "vm", which is not a WASI interface this runner implements .*\[WasmInvalid\]$/m);
}, 60_000);

describe("the transpiled JavaScript's imports", () => {
  const allowed = allowedComponentImports();
  const shim = [...allowed][0]!;
  it("finds static, bare, re-exported and dynamic imports", () => {
    const js = [`import { a } from '${shim}';`, `import "side-effect";`, `export { b } from "elsewhere";`, "const m = await import('node:fs/promises');", "await import(name);"].join("\n");
    expect(moduleSpecifiersOf(js)).toEqual({ static: [shim, "elsewhere", "side-effect"], dynamic: ["node:fs/promises", "(expression)"] });
  });
  it("accepts the shim and jco's own read of its core wasm, refuses anything else (a cached transpilation too)", () => {
    expect(() => assertTranspiledImports(`import { a } from '${shim}';\nawait import('node:fs/promises');`, "c")).not.toThrow();
    expect(() => assertTranspiledImports(`import { runInThisContext } from 'vm';`, "c")).toThrow(/c imports "vm"/);
    expect(() => assertTranspiledImports(`import { readFile } from 'node:fs/promises';`, "c")).toThrow(/c imports "node:fs\/promises"/);
    expect(() => assertTranspiledImports(`await import('node:child_process');`, "c")).toThrow(/c imports "node:child_process"/);
    expect(() => assertTranspiledImports(`await import(x);`, "c")).toThrow(/c imports "\(expression\)"/);
  });
});

it("refused network operations are logged within a bound: a flood of refusals cannot fill the disk past the stdio cap", async () => {
  // review s16: the refusal lines go to the runner's stderr past the cap; 64 lookups of a 1 MiB name and 20,000
  // refused connects wrote 68 MB with a 64 KiB cap
  const project = join(root, "flood");
  mkdirSync(project, { recursive: true });
  const component = await buildJsComponent(join(here, "fixtures/hostile-net/world.wit"), "hostile", join(here, "fixtures/denial-flood/flood.js"));
  writeFileSync(join(project, "flood.wasm"), component);
  const env = { III_HOME: join(root, "home-flood"), III_WASM_STDIO_CAP_BYTES: "65536" };
  const cli = (args: string[]) => runWorkerCli(args, { cwd: project, env });
  expect((await cli(["add", "./flood.wasm", "--name", "flood"])).code).toBe(0);
  const started = await cli(["start", "flood"]);
  expect(started.code, started.stderr).toBe(0);
  let row: { status: string; lastExit: { code: number | null } | null } | undefined;
  for (let i = 0; i < 600; i++) {
    row = (JSON.parse((await cli(["list", "--json"])).stdout) as { name: string; status: string; lastExit: { code: number | null } | null }[]).find((r) => r.name === "flood")!;
    if (row.status !== "running" && row.status !== "pending") break;
    await sleep(50);
  }
  expect(row).toMatchObject({ status: "completed", lastExit: { code: 0 } });
  const logs = await cli(["logs", "flood"]);
  expect(logs.stdout).toContain("refused 20064");
  expect(logs.stderr.length).toBeLessThan(65_536 + 64 * 1024);
  expect(logs.stderr).toContain(`[iii: more network refusals, not logged (at most ${MAX_DENIAL_LINES} per run)]`);
  expect(logs.stderr).not.toContain("\x1b");
}, 120_000);

it("the refusal log cuts and quotes what the guest chose", () => {
  const lines: string[] = [];
  const log = boundedDenialLog((l) => lines.push(l), 2);
  log({ op: "lookup", address: `\x1b]0;x\x07${"y".repeat(1000)}`, reason: "allowIpNameLookup is false" });
  log({ op: "tcpConnect", address: "127.0.0.1:1", reason: "not in tcpConnect" });
  log({ op: "tcpConnect", address: "127.0.0.1:2", reason: "not in tcpConnect" });
  log({ op: "tcpConnect", address: "127.0.0.1:3", reason: "not in tcpConnect" });
  expect(lines).toHaveLength(3);
  expect(lines[0]).toMatch(/^\[iii: network lookup "\\u001b\]0;x\\u0007y+…" refused: allowIpNameLookup is false\]\n$/);
  expect(lines[0]!.length).toBeLessThan(300);
  expect(lines[1]).toBe("[iii: network tcpConnect 127.0.0.1:1 refused: not in tcpConnect]\n");
  expect(lines[2]).toBe("[iii: more network refusals, not logged (at most 2 per run)]\n");
});

it("a component given a mount over III_HOME is refused at start: it would rewrite the code cache the runner executes", async () => {
  // review s16 (CLI): with --mount over III_HOME's parent, a component replaced its cached component.js with
  // `export const run = { run() { … process.env … } }` and the next start ran it in the runner
  const project = join(root, "overhome");
  const state = join(project, "state");
  const home = join(state, ".iii");
  mkdirSync(home, { recursive: true });
  writeFileSync(join(project, "writer.wasm"), await buildJsComponent(join(here, "fixtures/fs-writer/world.wit"), "fswriter", join(here, "fixtures/fs-writer/writer.js")));
  const cli = (args: string[]) => runWorkerCli(args, { cwd: project, env: { III_HOME: home } });
  expect((await cli(["add", "./writer.wasm", "--name", "w", "--mount", `${state}:/state`, "-e", "TARGET=.iii/planted-in-home.txt"])).code).toBe(0);
  const started = await cli(["start", "w"]);
  await untilNotRunning(cli, "w");
  expect(existsSync(join(home, "planted-in-home.txt"))).toBe(false);
  expect(started.stderr).toMatch(/overlaps III_HOME .*\[InvalidOption\]$/m);
  expect(started.code).toBe(1);
}, 60_000);

it("a writable mount holding the project's iii.workers.yaml is refused: the component would rewrite its own entry for the next start", async () => {
  // review s16 (CLI): a component with the project mounted writable rewrote its entry to `mounts: [/:/host]`, and
  // the next `start` took it (only the III_HOME check stopped that one; any other host dir would have been given)
  const project = join(root, "ownspec");
  mkdirSync(project, { recursive: true });
  writeFileSync(join(project, "writer.wasm"), await buildJsComponent(join(here, "fixtures/fs-writer/world.wit"), "fswriter", join(here, "fixtures/fs-writer/writer.js")));
  const cli = (args: string[]) => runWorkerCli(args, { cwd: project, env: { III_HOME: join(root, "home-ownspec") } });
  const spec = "workers:\n  w:\n    image: wasm:./writer.wasm\n    mounts:\n      - /etc:/host\n";
  // Refused at add already (one line, nothing written); a hand-edited file with the same mount is refused at start.
  const add = await cli(["add", "./writer.wasm", "--name", "w", "--mount", `${project}:/app`, "-e", "TARGET=iii.workers.yaml", "-e", `CONTENT=${spec}`]);
  expect(add.code).toBe(1);
  expect(add.stderr).toMatch(/holds .*iii\.workers\.yaml, where the guest could rewrite its own settings/);
  expect(existsSync(join(project, "iii.workers.yaml"))).toBe(false);
  expect((await cli(["add", "./writer.wasm", "--name", "w", "--mount", `${project}:/app:ro`, "-e", "TARGET=iii.workers.yaml", "-e", `CONTENT=${spec}`])).code).toBe(0);
  writeFileSync(join(project, "iii.workers.yaml"), readFileSync(join(project, "iii.workers.yaml"), "utf8").replace(`${project}:/app:ro`, `${project}:/app`));
  const before = readFileSync(join(project, "iii.workers.yaml"), "utf8");
  expect(before).toContain(`${project}:/app\n`);
  const started = await cli(["start", "w"]);
  await untilNotRunning(cli, "w");
  expect(readFileSync(join(project, "iii.workers.yaml"), "utf8")).toBe(before);
  expect(started.stderr).toMatch(/holds .*iii\.workers\.yaml, where the guest could rewrite its own settings/);
  expect(started.code).toBe(1);
  // read-only, the same mount runs (the write is refused inside)
  expect((await cli(["remove", "w"])).code).toBe(0);
  expect((await cli(["add", "./writer.wasm", "--name", "w", "--mount", `${project}:/app:ro`, "-e", "TARGET=iii.workers.yaml"])).code).toBe(0);
  expect((await cli(["start", "w"])).code).toBe(0);
}, 60_000);

it("a writable mount holding another iii project's iii.workers.yaml is refused: the component would rewrite that project's workers", async () => {
  // review rev6g: `--mount ~/code:/code` from project p2; the component rewrote /code/p1/iii.workers.yaml to mount
  // /etc, and p1's next `start` would have done it. VM shares make the file read-only (protectedNames); a WASM mount
  // is the host's directory itself, so the start is refused.
  const code = join(root, "code");
  const victim = join(code, "p1");
  const project = join(root, "p2");
  mkdirSync(victim, { recursive: true });
  mkdirSync(project, { recursive: true });
  const victimSpec = "workers:\n  victim:\n    image: wasm:./v.wasm\n";
  writeFileSync(join(victim, "iii.workers.yaml"), victimSpec);
  writeFileSync(join(project, "writer.wasm"), await buildJsComponent(join(here, "fixtures/fs-writer/world.wit"), "fswriter", join(here, "fixtures/fs-writer/writer.js")));
  const cli = (args: string[]) => runWorkerCli(args, { cwd: project, env: { III_HOME: join(root, "home-nested") } });
  const planted = "workers:\n  victim:\n    image: wasm:./v.wasm\n    mounts:\n      - /etc:/host\n";
  expect((await cli(["add", "./writer.wasm", "--name", "w", "--mount", `${code}:/code`, "-e", "TARGET=p1/iii.workers.yaml", "-e", `CONTENT=${planted}`])).code).toBe(0);
  const started = await cli(["start", "w"]);
  await untilNotRunning(cli, "w");
  expect(readFileSync(join(victim, "iii.workers.yaml"), "utf8")).toBe(victimSpec);
  expect(started.stderr).toMatch(/writable mount .* holds p1\/iii\.workers\.yaml, an iii project's workers file.*\[InvalidOption\]$/m);
  expect(started.code).toBe(1);
  // read-only, the same mount runs (the write is refused inside)
  expect((await cli(["remove", "w"])).code).toBe(0);
  expect((await cli(["add", "./writer.wasm", "--name", "w", "--mount", `${code}:/code:ro`, "-e", "TARGET=p1/iii.workers.yaml", "-e", `CONTENT=${planted}`])).code).toBe(0);
  expect((await cli(["start", "w"])).code).toBe(0);
  await untilNotRunning(cli, "w");
  expect(readFileSync(join(victim, "iii.workers.yaml"), "utf8")).toBe(victimSpec);
}, 60_000);

it("a transpile bomb is bounded: jco runs in a child under caps, and a transpilation over the output cap is refused with nothing cached", async () => {
  // review s16: a 1 MB component of 20,000 function exports (here 10,000) made jco, in the CLI itself, take 2.8 s and 491 MiB and
  // write 42 MB of JavaScript; the output grows with what the binary declares, up to the 1 GiB module limit
  const exports = Array.from({ length: 10_000 }, (_, k) => `  (func $f${k} (canon lift (core func $i "f")))\n  (export "f${k}" (func $f${k}))`).join("\n");
  const source = `(component\n  (core module $m (func (export "f")))\n  (core instance $i (instantiate $m))\n${exports}\n)`;
  const jcoDir = realpathSync(join(here, "../../node_modules/@bytecodealliance/jco"));
  const { parse } = (await import(createRequire(join(jcoDir, "package.json")).resolve("@bytecodealliance/jco"))) as { parse(wat: string): Promise<Uint8Array> };
  const project = join(root, "bomb");
  mkdirSync(project, { recursive: true });
  writeFileSync(join(project, "bomb.wasm"), await parse(source));
  const home = join(root, "home-bomb");
  const cli = (args: string[]) => runWorkerCli(args, { cwd: project, env: { III_HOME: home, III_WASM_TRANSPILE_MAX_BYTES: String(8 * 2 ** 20) } });
  expect((await cli(["add", "./bomb.wasm", "--name", "bomb"])).code).toBe(0);
  const started = await cli(["start", "bomb"]);
  expect(started.stderr).toMatch(/jco could not transpile the component: its transpilation is \d+ bytes \(at most 8388608\) \[WasmInvalid\]$/m);
  expect(started.code).toBe(1);
  expect(readdirSync(join(home, "wasm-cache"))).toEqual([]);
}, 120_000);
