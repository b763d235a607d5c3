import { createHash } from "node:crypto";
import { mkdir, readFile, rename, rm, writeFile } from "node:fs/promises";
import { createRequire } from "node:module";
import { dirname, join } from "node:path";
import { pathToFileURL } from "node:url";
import { IiiError } from "../errors.js";
import { packageInfo } from "./packages.js";

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
  try {
    await readFile(join(dir, "component.js"));
    return { dir, runtimeDirs, cached: true };
  } catch {
    // not cached yet
  }
  type Jco = {
    transpile(bytes: Uint8Array, opts: Record<string, unknown>): Promise<{ files: Record<string, Uint8Array>; exports: [string, string][] }>;
  };
  // An optional dependency (it brings ~300 MB of tooling): preview 1 modules and VM workers never need it.
  const jco = (await import("@bytecodealliance/jco").catch((error: unknown) => {
    throw new IiiError("WasmStartFailed", "preview 2 components need the optional dependency @bytecodealliance/jco (npm install @bytecodealliance/jco@1.35.0)", { cause: error });
  })) as unknown as Jco;
  let out;
  try {
    out = await jco.transpile(bytes, {
      name: "component",
      noTypescript: true,
      quiet: true,
      map: {
        ...Object.fromEntries(SHIM_INTERFACES.map((n) => [`wasi:${n}/*`, `${shimModuleUrl(n)}#*`])),
        "iii:worker/engine": ENGINE_IMPORT_URL,
      },
    });
  } catch (error) {
    throw new IiiError("WasmInvalid", `jco could not transpile the component: ${(error as Error).message.split("\n")[0]}`);
  }
  const tmp = `${dir}.${process.pid}.tmp`;
  await rm(tmp, { recursive: true, force: true });
  for (const [file, content] of Object.entries(out.files)) {
    if (file.endsWith(".d.ts")) continue;
    await mkdir(dirname(join(tmp, file)), { recursive: true, mode: 0o700 });
    await writeFile(join(tmp, file), content);
  }
  await mkdir(dirname(dir), { recursive: true, mode: 0o700 });
  try {
    await rename(tmp, dir);
  } catch {
    await rm(tmp, { recursive: true, force: true }); // another start won the race; its copy is the same
  }
  return { dir, runtimeDirs, cached: false };
}
