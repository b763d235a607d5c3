import { spawn } from "node:child_process";
import { createHash } from "node:crypto";
import { once } from "node:events";
import { mkdir, readFile, rename, rm, writeFile } from "node:fs/promises";
import { createRequire } from "node:module";
import { dirname, join } from "node:path";
import { pathToFileURL } from "node:url";
import { IiiError } from "../errors.js";
import { realOrSelf } from "../util/path-within.js";
import { packageClosure, packageInfo, readRoots } from "./packages.js";

export interface Transpiled {
  /** The directory with `component.js` (an ES module) and its core wasm files. */
  dir: string;
  /** Directories the runner must be able to read besides it (preview2-shim). */
  runtimeDirs: string[];
  cached: boolean;
}

const require = createRequire(import.meta.url);
/** The WASI interfaces preview2-shim implements, mapped to its files by absolute URL (the cache dir has no node_modules). */
export const SHIM_INTERFACES = ["cli", "clocks", "filesystem", "http", "io", "random", "sockets"] as const;

/** The module a component's `iii:worker/engine` import is bound to (it forwards to the runner's engine link). */
export const ENGINE_IMPORT_URL = new URL("./wasm-engine-import.js", import.meta.url).href;

export function shimModuleUrl(name: (typeof SHIM_INTERFACES)[number]): string {
  return pathToFileURL(require.resolve(`@bytecodealliance/preview2-shim/${name}`)).href;
}

/**
 * The only modules a transpiled component may import: preview2-shim's interface files and the engine import.
 * jco turns every import of a component that the map does not name into an ES import of that very name, so a
 * component importing an interface called `vm` with a function `run-in-this-context` got
 * `import { runInThisContext } from 'vm'` and ran any JavaScript it liked in the runner (the host's environment,
 * Node's unrestricted network, process.kill): measured, review s16. Anything else is refused.
 */
export function allowedComponentImports(): Set<string> {
  return new Set([...SHIM_INTERFACES.map(shimModuleUrl), ENGINE_IMPORT_URL]);
}

/**
 * Bounds of one transpilation. jco parses the guest's binary and writes JavaScript for it, in proportion to what
 * the binary declares, not to its size: a 1 MB component of 20,000 function exports took 2.8 s and 491 MiB in the
 * CLI and became 42 MB of JavaScript (review s16), so a binary under the 1 GiB module limit could take the CLI's
 * memory and III_HOME's disk. It runs in a child process with a heap cap, a cap on jco's own wasm memory, a time
 * limit and a cap on what it may write. `III_WASM_TRANSPILE_MAX_BYTES` overrides the output cap.
 */
export interface TranspileLimits {
  timeoutMs: number;
  maxOldSpaceMb: number;
  maxWasmPages: number;
  maxOutputBytes: number;
}

export function transpileLimits(env: NodeJS.ProcessEnv = process.env): TranspileLimits {
  return { timeoutMs: 120_000, maxOldSpaceMb: 2048, maxWasmPages: 32_768, maxOutputBytes: Number(env.III_WASM_TRANSPILE_MAX_BYTES) || 256 * 2 ** 20 };
}

/** The child: transpiles the input file, refuses an output over the cap, writes the files, prints `{imports}` or `{error}`. */
/**
 * First lines of the transpile child: a Worker created with `execArgv: []` runs outside Node's permission model
 * (see component-guest.ts keepWorkersUnderPermissionModel), and preview2-shim, which jco loads, makes its I/O worker
 * (the thread that opens files for jco's own wasm) with exactly that. Every Worker made here gets this process's
 * permission flags instead (only those: a worker refuses `--input-type` and V8's heap flags).
 */
export const TRANSPILE_CHILD_PRELUDE = `
import { createRequire as iiiCreateRequire, syncBuiltinESMExports as iiiSyncBuiltins } from "node:module";
{
  const threads = iiiCreateRequire(import.meta.url)("node:worker_threads");
  const Original = threads.Worker;
  const flags = process.execArgv.filter((a) => a === "--permission" || a.startsWith("--allow-"));
  threads.Worker = class extends Original {
    constructor(filename, options = {}) {
      super(filename, { ...options, execArgv: flags });
    }
  };
  iiiSyncBuiltins();
}
`;

const TRANSPILE_CHILD = `${TRANSPILE_CHILD_PRELUDE}
import { mkdirSync, readFileSync, writeFileSync } from "node:fs";
import { dirname, isAbsolute, join, normalize } from "node:path";
const [jcoUrl, input, outDir, optionsJson, maxOutput] = process.argv.slice(1);
const say = (o) => process.stdout.write(JSON.stringify(o));
const jco = await import(jcoUrl);
let out;
try {
  out = await jco.transpile(readFileSync(input), JSON.parse(optionsJson));
} catch (e) {
  say({ error: String(e?.message ?? e).split("\\n")[0] });
  process.exit(0);
}
const files = Object.entries(out.files).filter(([name]) => !name.endsWith(".d.ts"));
const total = files.reduce((sum, [, content]) => sum + content.byteLength, 0);
if (total > Number(maxOutput)) {
  say({ error: "its transpilation is " + total + " bytes (at most " + maxOutput + ")" });
  process.exit(0);
}
for (const [name, content] of files) {
  const path = normalize(name);
  if (isAbsolute(path) || path.split("/").includes("..")) {
    say({ error: "jco named an output file outside its directory" });
    process.exit(0);
  }
  mkdirSync(dirname(join(outDir, path)), { recursive: true, mode: 0o700 });
  writeFileSync(join(outDir, path), content);
}
say({ imports: out.imports });
`;

/**
 * The transpiling child's Node permission model: jco parses the untrusted binary, as root, so what a bug in its
 * JavaScript could reach is held to reading jco's own code and the input and writing the output directory, with
 * no child processes and no network (review rev6h: it ran with the CLI's full rights). Worker threads (the
 * preview2-shim jco loads starts one) run under the same model; native addons (oxc's parser and minifier, which
 * jco loads) are allowed and are not confined by it.
 */
export function transpileChildPermissions(input: string, outDir: string): string[] {
  const read = [...readRoots(packageClosure("@bytecodealliance/jco")), realOrSelf(input)];
  return ["--permission", "--allow-worker", "--allow-addons", ...read.map((p) => `--allow-fs-read=${p}`), `--allow-fs-write=${realOrSelf(outDir)}`, "--disable-warning=SecurityWarning"];
}

/** Runs jco in a child process under `limits`, writing into `outDir`; resolves with the imports jco reports. */
async function transpileInChild(bytes: Uint8Array, outDir: string, options: object, limits: TranspileLimits): Promise<string[]> {
  let jcoUrl: string;
  try {
    jcoUrl = pathToFileURL(require.resolve("@bytecodealliance/jco")).href;
  } catch (error) {
    // An optional dependency (it brings ~300 MB of tooling): preview 1 modules and VM workers never need it.
    throw new IiiError("WasmStartFailed", "preview 2 components need the optional dependency @bytecodealliance/jco (npm install @bytecodealliance/jco@1.35.0)", { cause: error });
  }
  const input = `${outDir}.in.wasm`;
  await writeFile(input, bytes, { mode: 0o600 });
  try {
    const child = spawn(
      process.execPath,
      [...transpileChildPermissions(input, outDir), `--max-old-space-size=${limits.maxOldSpaceMb}`, `--wasm-max-mem-pages=${limits.maxWasmPages}`, "--input-type=module", "-e", TRANSPILE_CHILD, jcoUrl, input, outDir, JSON.stringify(options), String(limits.maxOutputBytes)],
      { stdio: ["ignore", "pipe", "pipe"], timeout: limits.timeoutMs, killSignal: "SIGKILL" },
    );
    let stdout = "";
    let stderr = "";
    child.stdout.setEncoding("utf8").on("data", (d: string) => {
      if (stdout.length < 1 << 20) stdout += d;
    });
    child.stderr.setEncoding("utf8").on("data", (d: string) => {
      stderr = (stderr + d).slice(-2_000);
    });
    const [code, signal] = (await once(child, "close")) as [number | null, NodeJS.Signals | null];
    let reply: { imports?: string[]; error?: string } | undefined;
    try {
      reply = JSON.parse(stdout) as typeof reply;
    } catch {
      reply = undefined;
    }
    if (reply?.imports && code === 0) return reply.imports;
    const why =
      reply?.error ??
      (signal === "SIGKILL"
        ? `it took longer than ${limits.timeoutMs / 1000} s`
        : `jco ended (${signal ?? `exit ${code}`}) within its limits (${limits.maxOldSpaceMb} MiB heap, ${limits.maxWasmPages / 16} MiB wasm memory): ${stderr.trim().split("\n").at(-1) ?? ""}`);
    throw new IiiError("WasmInvalid", `jco could not transpile the component: ${why}`);
  } finally {
    await rm(input, { force: true });
  }
}

/** The one dynamic import jco's own glue makes (it reads the core wasm files with it). */
const JCO_RUNTIME_IMPORT = "node:fs/promises";

/** Throws WasmInvalid naming the first import that is not allowed (`what`: the component, for the message). */
function assertAllowed(specifiers: Iterable<string>, allowed: Set<string>, what: string): void {
  for (const spec of specifiers) {
    if (!allowed.has(spec)) {
      throw new IiiError(
        "WasmInvalid",
        `${what} imports ${JSON.stringify(spec.slice(0, 120))}, which is not a WASI interface this runner implements (wasi:${SHIM_INTERFACES.join("|")}/…) nor iii:worker/engine: refused (an unknown import would become a JavaScript import in the runner)`,
      );
    }
  }
}

/**
 * Every module specifier in a transpiled `component.js`: static `import … from '…'`, bare `import '…'`,
 * `export … from '…'` and `import(…)`. A dynamic import of anything but a string literal counts as the
 * specifier `(expression)`, which no allow-list holds.
 */
export function moduleSpecifiersOf(js: string): { static: string[]; dynamic: string[] } {
  const found = { static: [] as string[], dynamic: [] as string[] };
  for (const m of js.matchAll(/^[ \t]*(?:import|export)\b[^'"`;]*?\bfrom[ \t]*(['"])(.*?)\1/gm)) found.static.push(m[2]!);
  for (const m of js.matchAll(/^[ \t]*import[ \t]*(['"])(.*?)\1/gm)) found.static.push(m[2]!);
  for (const m of js.matchAll(/\bimport[ \t\n]*\(([^)]*)\)/g)) {
    const literal = /^[ \t\n]*(['"])([^'"]*)\1[ \t\n]*$/.exec(m[1]!);
    found.dynamic.push(literal ? literal[2]! : "(expression)");
  }
  return found;
}

/** Refuses (WasmInvalid) a transpiled component whose JavaScript imports anything but the shim and the engine import. */
export function assertTranspiledImports(js: string, what: string, allowed: Set<string> = allowedComponentImports()): void {
  const found = moduleSpecifiersOf(js);
  assertAllowed(found.static, allowed, what);
  assertAllowed(found.dynamic, new Set([JCO_RUNTIME_IMPORT]), what);
}

function shimPackageDir(): string {
  const shim = packageInfo("@bytecodealliance/preview2-shim");
  if (!shim) throw new IiiError("WasmStartFailed", "@bytecodealliance/preview2-shim is not installed: preview 2 components cannot run");
  return shim.dir;
}

/**
 * Transpiles a component with jco once: the result is cached under III_HOME/wasm-cache/<key>, where the key is
 * the component's digest plus the jco and shim versions and the shim's location (its files are imported by URL).
 */
export async function transpileComponent(bytes: Uint8Array, digest: string, home: string): Promise<Transpiled> {
  const shimDir = shimPackageDir();
  const versions = `${packageInfo("@bytecodealliance/jco")?.version}:${packageInfo("@bytecodealliance/preview2-shim")?.version}`;
  const key = createHash("sha256").update(`${digest}\n${versions}\n${shimDir}\n${ENGINE_IMPORT_URL}`).digest("hex").slice(0, 32);
  const dir = join(home, "wasm-cache", key);
  const runtimeDirs = [shimDir];
  const allowed = allowedComponentImports();
  let cachedJs: string | undefined;
  try {
    cachedJs = await readFile(join(dir, "component.js"), "utf8");
  } catch {
    // not cached yet
  }
  if (cachedJs !== undefined) {
    // checked at every start: a transpilation cached before this check existed is held to it too
    assertTranspiledImports(cachedJs, "the component", allowed);
    return { dir, runtimeDirs, cached: true };
  }
  const options = {
    name: "component",
    noTypescript: true,
    quiet: true,
    map: {
      ...Object.fromEntries(SHIM_INTERFACES.map((n) => [`wasi:${n}/*`, `${shimModuleUrl(n)}#*`])),
      "iii:worker/engine": ENGINE_IMPORT_URL,
    },
  };
  const tmp = `${dir}.${process.pid}.tmp`;
  await rm(tmp, { recursive: true, force: true });
  await mkdir(tmp, { recursive: true, mode: 0o700 });
  let imports: string[];
  try {
    imports = await transpileInChild(bytes, tmp, options, transpileLimits());
    // what jco reports it imports, and what the JavaScript it wrote actually imports
    assertAllowed(imports, allowed, "the component");
    let js: string;
    try {
      js = await readFile(join(tmp, "component.js"), "utf8");
    } catch {
      throw new IiiError("WasmInvalid", "jco wrote no component.js for the component");
    }
    assertTranspiledImports(js, "the component", allowed);
  } catch (error) {
    await rm(tmp, { recursive: true, force: true });
    throw error;
  }
  await mkdir(dirname(dir), { recursive: true, mode: 0o700 });
  try {
    await rename(tmp, dir);
  } catch {
    await rm(tmp, { recursive: true, force: true }); // another start won the race; its copy is the same
  }
  return { dir, runtimeDirs, cached: false };
}
