import { cpSync, mkdirSync, mkdtempSync, readFileSync, realpathSync, rmSync, writeFileSync } from "node:fs";
import { createRequire } from "node:module";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { setTimeout as sleep } from "node:timers/promises";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { allowedComponentImports, assertTranspiledImports, moduleSpecifiersOf } from "../../src/wasm/transpile.js";
import { runWorkerCli } from "../helpers.js";

// A component may import only the WASI interfaces preview2-shim implements and iii:worker/engine. Review s16: jco
// turned any other import into an ES import of its name, and a component importing `vm` ran JavaScript of its
// choice in the runner, with the host's environment (measured: it printed a secret of the CLI's environment).

const here = dirname(fileURLToPath(import.meta.url));
const fixture = join(here, "fixtures/escape-js");
let root: string;
beforeAll(() => {
  root = mkdtempSync(join(tmpdir(), "iii-wasm-imports-"));
});
afterAll(() => rmSync(root, { recursive: true, force: true }));

async function buildEscapeComponent(): Promise<Uint8Array> {
  const jcoDir = realpathSync(join(here, "../../node_modules/@bytecodealliance/jco"));
  const jcoRequire = createRequire(join(jcoDir, "package.json"));
  const builtin = join(jcoDir, "lib/wit/builtin/0.2.12");
  const wit = join(root, "wit");
  mkdirSync(join(wit, "deps"), { recursive: true });
  cpSync(join(fixture, "world.wit"), join(wit, "world.wit"));
  for (const dep of ["wasi-cli", "wasi-clocks", "wasi-filesystem", "wasi-io", "wasi-random", "wasi-sockets"]) cpSync(join(builtin, dep), join(wit, "deps", dep), { recursive: true });
  const { componentize } = (await import(jcoRequire.resolve("componentize-qjs"))) as { componentize(o: object): Promise<{ component: Uint8Array }> };
  const jsPath = join(fixture, "escape.js");
  return (await componentize({ witPath: wit, jsSource: readFileSync(jsPath, "utf8"), jsPath, world: "escape" })).component;
}

it("a component importing anything but WASI and iii:worker/engine is refused at start; its JavaScript never runs", async () => {
  const project = join(root, "p");
  mkdirSync(project, { recursive: true });
  writeFileSync(join(project, "escape.wasm"), await buildEscapeComponent());
  const env = { III_HOME: join(root, "home"), III_TEST_HOST_SECRET: "host-secret-s16" };
  const cli = (args: string[]) => runWorkerCli(args, { cwd: project, env });
  expect((await cli(["add", "./escape.wasm", "--name", "escape"])).code).toBe(0);
  const started = await cli(["start", "escape"]);
  for (let i = 0; i < 100; i++) {
    const row = (JSON.parse((await cli(["list", "--json"])).stdout) as { name: string; status: string }[]).find((r) => r.name === "escape")!;
    if (row.status !== "running" && row.status !== "pending") break;
    await sleep(50);
  }
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
