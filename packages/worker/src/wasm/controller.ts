import { spawn } from "node:child_process";
import { createHash } from "node:crypto";
import { closeSync, openSync, realpathSync } from "node:fs";
import { readFile, stat } from "node:fs/promises";
import { dirname, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { ERROR_CODES, IiiError, type ErrorCode } from "../errors.js";
import { awaitReadyLine, READY_FD } from "../launch/ready-pipe.js";
import { writeFileAtomic } from "../util/atomic-write.js";
import { iiiHome, workerPaths, workersFilePath } from "../paths.js";
import { isWasmImage, type WorkerSpec } from "../state/model.js";
import { loadWorkersFile } from "../state/workers-file.js";
import { buildWasiConfig, encodeWasiConfig, WASM_PAGE, type WasiConfig } from "./config.js";
import { detectWasmKind } from "./kind.js";
import { assertOneMemory } from "./memories.js";
import { DEFAULT_STDIO_CAP_BYTES, type WasmLaunch } from "./protocol.js";
import { packageClosure, packageInfo, readRoots } from "./packages.js";
import { SHIM_INTERFACES, shimModuleUrl, transpileComponent } from "./transpile.js";
import { assertClearOfIii } from "../launch/share-safety.js";
import { realOrSelf } from "../util/path-within.js";
import { changeableByOthers } from "../state/home-safety.js";

export const WASM_RUNNER_ENTRY = fileURLToPath(new URL("./wasm-runner.js", import.meta.url));
export const WASI_CONFIG_FILE = "wasi-config.json";

export function wasmModulePath(image: string): string {
  return image.slice("wasm:".length);
}

/**
 * The runner's Node flags: the permission model with fs allow-lists (its own code, the binary, the worker's
 * managed dir, and the dirs of WASI_CONFIG: read-only dirs only in the read list), worker threads and WASI
 * allowed, nothing else (no child processes, no addons), and V8's page cap as the memory limit.
 */
export function runnerNodeFlags(config: WasiConfig, launch: WasmLaunch, workerDir: string, extraRead: string[] = []): string[] {
  const read = new Set<string>([realOrSelf(dirname(WASM_RUNNER_ENTRY)), realOrSelf(launch.module), realOrSelf(workerDir), ...extraRead.flatMap((p) => [p, realOrSelf(p)])]);
  const write = new Set<string>([realOrSelf(workerDir)]);
  for (const d of config.dirs) {
    read.add(realOrSelf(d.hostPath));
    if (!d.readOnly) write.add(realOrSelf(d.hostPath));
  }
  return [
    "--permission",
    "--allow-worker",
    "--allow-wasi",
    // its own start time (pid + start time identify the runner in vm.json)
    "--allow-fs-read=/proc/self/stat",
    ...[...read].map((p) => `--allow-fs-read=${p}`),
    ...[...write].map((p) => `--allow-fs-write=${p}`),
    `--wasm-max-mem-pages=${Math.max(1, Math.floor(config.limits.maxMemoryBytes / WASM_PAGE))}`,
    "--disable-warning=ExperimentalWarning",
    "--disable-warning=SecurityWarning",
  ];
}

/** The directories of the code the runner loads (this package, preview2-shim, the engine link's packages). */
function runnerCodeDirs(): string[] {
  const dirs = [dirname(dirname(WASM_RUNNER_ENTRY))];
  const shim = packageInfo("@bytecodealliance/preview2-shim");
  if (shim) dirs.push(shim.dir);
  const jco = packageInfo("@bytecodealliance/jco");
  if (jco) dirs.push(jco.dir);
  return [...dirs, ...packageClosure("@iii/network"), ...packageClosure("iii-sdk")];
}

/** The module files of the project's other WASM workers (none when the project file cannot be read). */
async function otherWasmModules(name: string, cwd: string): Promise<string[]> {
  try {
    const file = await loadWorkersFile(workersFilePath(cwd));
    return Object.entries(file.workers)
      .filter(([other, spec]) => other !== name && isWasmImage(spec.image))
      .map(([, spec]) => resolve(cwd, wasmModulePath(spec.image)));
  } catch {
    return [];
  }
}

/**
 * What the runner inherits of the CLI's environment: iii's own variables, Node's (NODE_OPTIONS,
 * NODE_EXTRA_CA_CERTS for a wss engine), OpenTelemetry's, locale, time zone, PATH, HOME, TMPDIR and the TLS
 * certificate locations. Not the rest (cloud credentials, tokens, the user's own secrets): the runner hosts the
 * guest, and a way from the guest into its JavaScript found the whole environment there (review s16).
 */
const RUNNER_ENV = /^(?:III_|NODE_|OTEL_|LC_)|^(?:PATH|HOME|LANG|LANGUAGE|TZ|TMPDIR|SSL_CERT_FILE|SSL_CERT_DIR)$/;

export function runnerEnv(env: NodeJS.ProcessEnv): NodeJS.ProcessEnv {
  return Object.fromEntries(Object.entries(env).filter(([key, value]) => value !== undefined && RUNNER_ENV.test(key)));
}

export interface WasmStartOptions {
  env: NodeJS.ProcessEnv;
  cwd: string;
  /** The engine a handler component registers with (the runner connects to it from the host). */
  engineUrl: string;
  timeoutMs?: number;
}

/** Prepares WASI_CONFIG and the launch file, spawns the runner in its own session, waits for ready or failed. */
export async function startWasmWorker(name: string, spec: WorkerSpec, options: WasmStartOptions): Promise<{ pid: number; timings: Record<string, number> }> {
  const { env, cwd } = options;
  const t0 = performance.now();
  const module = wasmModulePath(spec.image);
  // Read as this user (root, for most), with the mounts and network this worker was given: a module another local
  // user can replace (a directory they can write and that is not sticky) would run as theirs (review rev6i: uid
  // 65534 swapped /srv/pub/app.wasm and root's `start` ran its module). As oci: layouts are refused.
  let why: string | undefined;
  try {
    why = changeableByOthers(realpathSync(module));
  } catch {
    why = undefined; // missing or unreadable: said by the read below
  }
  if (why) throw new IiiError("WasmInvalid", `refusing to run ${module}: ${why}, so another user could replace it; keep it where only you (or root) can write`);
  let bytes: Buffer;
  try {
    bytes = await readFile(module);
  } catch (error) {
    throw new IiiError("WasmInvalid", `cannot read ${module}: ${(error as Error).message}`);
  }
  const kind = detectWasmKind(bytes, module);
  assertOneMemory(bytes, module);
  const config = buildWasiConfig(name, spec, options.engineUrl);
  const shares = config.dirs.map((d) => ({ host: d.hostPath, guest: d.guestPath, readOnly: d.readOnly }));
  assertClearOfIii(shares, { home: iiiHome(env), projectFile: workersFilePath(cwd), otherModules: await otherWasmModules(name, cwd), code: runnerCodeDirs() });
  for (const d of config.dirs) {
    if (!(await stat(d.hostPath).catch(() => undefined))?.isDirectory()) throw new IiiError("InvalidOption", `dir ${d.hostPath} (for ${d.guestPath}) is not a directory`);
  }
  const paths = workerPaths(name, env, cwd);
  const digest = createHash("sha256").update(bytes).digest("hex");
  const launch: WasmLaunch = { name, module: realOrSelf(module), kind, digest, stdioCapBytes: Number(env.III_WASM_STDIO_CAP_BYTES) || DEFAULT_STDIO_CAP_BYTES };
  const extraRead: string[] = [];
  if (kind === "component") {
    const t = await transpileComponent(bytes, digest, iiiHome(env));
    launch.transpiled = t.dir;
    extraRead.push(t.dir, ...t.runtimeDirs, ...readRoots([...packageClosure("@iii/network"), ...packageClosure("iii-sdk")]));
  }
  const configPath = `${paths.dir}/${WASI_CONFIG_FILE}`;
  await writeFileAtomic(configPath, encodeWasiConfig(config), { mode: 0o600 });
  await writeFileAtomic(`${paths.dir}/wasm-launch.json`, `${JSON.stringify(launch, null, 2)}\n`, { mode: 0o600 });
  const log = openSync(paths.supervisorLog, "a", 0o600);
  // Components write through preview2-shim to the process's own fds 1 and 2 (not capped per run, unlike modules).
  const out = kind === "component" ? openSync(paths.stdoutLog, "a", 0o600) : log;
  const err = kind === "component" ? openSync(paths.stderrLog, "a", 0o600) : log;
  let child;
  try {
    child = spawn(process.execPath, [...runnerNodeFlags(config, launch, paths.dir, extraRead), WASM_RUNNER_ENTRY, "__wasm-run", configPath], {
      detached: true,
      stdio: ["ignore", out, err, "pipe"],
      env: {
        ...runnerEnv(env),
        III_READY_FD: String(READY_FD),
        // what iii-sdk reports to the engine for the runner's connection
        III_ISOLATION: "wasm",
        III_WORKER_NAME: name,
        ...(kind === "component" ? { III_WASM_SHIM_URLS: JSON.stringify(Object.fromEntries(SHIM_INTERFACES.map((n) => [n, shimModuleUrl(n)]))) } : {}),
      },
      cwd: paths.dir,
    });
  } finally {
    for (const fd of new Set([log, out, err])) closeSync(fd);
  }
  const timeoutMs = options.timeoutMs ?? 30_000;
  const { timedOut, line } = await awaitReadyLine(child, timeoutMs);
  if (timedOut) throw new IiiError("WasmStartFailed", `the WASM runner of "${name}" did not start within ${timeoutMs / 1000} s`);
  let reply: { event: string; pid?: number; code?: string; message?: string; timings?: Record<string, number> } | undefined;
  try {
    reply = line ? JSON.parse(line) : undefined;
  } catch {
    reply = undefined;
  }
  if (reply?.event === "ready") return { pid: reply.pid!, timings: { ...reply.timings, start: Math.round(performance.now() - t0) } };
  if (reply?.event === "failed") {
    const code = (reply.code && reply.code in ERROR_CODES ? reply.code : "WasmStartFailed") as ErrorCode;
    throw new IiiError(code, reply.message ?? "the WASM runner failed");
  }
  throw new IiiError("WasmStartFailed", `the WASM runner of "${name}" exited during start (see ${paths.supervisorLog})`);
}
