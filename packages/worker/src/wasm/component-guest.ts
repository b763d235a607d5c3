import { createRequire, syncBuiltinESMExports } from "node:module";
import { join } from "node:path";
import { pathToFileURL } from "node:url";
import { MessageChannel, parentPort, receiveMessageOnPort } from "node:worker_threads";
import { parseWasiConfig } from "./config.js";
import { ENGINE_BRIDGE, type EngineBridge, type GuestData, type GuestMessage, type HostMessage, type WitResult } from "./protocol.js";
import { createSocketGuard, egressRulesFor, guardShimHttp, guardShimSockets, type ShimHttp, type ShimSockets } from "./net-guard.js";

interface ShimCli {
  stdout: { getStdout(): ShimOutputStream };
  stderr: { getStderr(): ShimOutputStream };
  _setEnv(env: Record<string, string>): void;
  _setArgs(args: string[]): void;
  _setCwd(cwd: string): void;
}
interface ShimFs {
  _clearPreopens(): void;
  _setPreopens(preopens: Record<string, string>): void;
}

/**
 * Preview 2: the jco transpilation runs on preview2-shim in this worker thread. The shim's preopens default to
 * the host's `/`: they are replaced by exactly the dirs of WASI_CONFIG (read-only ones are held read-only by the
 * runner's permission model, since the shim has no read-only flag). The shim's network switches are
 * all-or-nothing per protocol: TCP, UDP and name lookup are denied unless WASI_CONFIG opens them.
 * The shim ends the thread with process.exit(code) on `exit`/`exit-with-code`: the runner takes that code.
 */
export async function runComponentGuest(data: GuestData, started: () => void, exited: (code: number) => void): Promise<void> {
  installEngineBridge();
  const config = parseWasiConfig(data.configText);
  keepWorkersUnderPermissionModel();
  const urls = JSON.parse(process.env.III_WASM_SHIM_URLS ?? "{}") as Record<string, string>;
  const cli = (await import(urls.cli!)) as ShimCli;
  const fs = (await import(urls.filesystem!)) as ShimFs;
  const sockets = (await import(urls.sockets!)) as ShimSockets;
  cli._setEnv(config.env);
  cli._setArgs(config.args);
  cli._setCwd(config.dirs[0]?.guestPath ?? "/");
  capOutputStream(cli.stdout.getStdout(), "stdout", data.launch.stdioCapBytes);
  capOutputStream(cli.stderr.getStderr(), "stderr", data.launch.stdioCapBytes);
  fs._clearPreopens();
  fs._setPreopens(Object.fromEntries(config.dirs.map((d) => [d.guestPath, d.hostPath])));
  const net = config.network;
  const { EgressPolicy } = (await import("@iii/network")) as unknown as { EgressPolicy: new (o: object) => { decide(p: string, ip: number, port: number, gw: number): { allowed: boolean; rule: string } } };
  const policy = new EgressPolicy({
    mode: net.inherit ? "public" : "none",
    hostPorts: [],
    rules: [...egressRulesFor(net.tcpConnect, "tcp"), ...egressRulesFor([...net.udpConnect, ...net.udpOutgoing], "udp")],
  });
  const egress = (protocol: "tcp" | "udp", ip: number, port: number) => policy.decide(protocol, ip, port, 0xffffffff);
  const logDenial = boundedDenialLog((line) => process.stderr.write(line));
  const guard = createSocketGuard(net, egress, logDenial);
  guardShimSockets(sockets, guard);
  guardShimHttp((await import(urls.http!)) as ShimHttp, guard);
  const component = (await import(pathToFileURL(join(data.launch.transpiled!, "component.js")).href)) as {
    run?: { run(): void };
    handler?: Handler;
  };
  if (component.handler) return serveHandler(component.handler, started);
  if (!component.run) throw new Error("the component exports neither wasi:cli/run nor iii:worker/handler: nothing to run");
  started();
  component.run.run();
  exited(0);
}

/** Most refusals logged per run, and most characters of the address (or looked-up name) quoted in one. */
export const MAX_DENIAL_LINES = 100;
const MAX_DENIAL_ADDRESS_CHARS = 200;

/**
 * The runner's line per refused network operation, bounded: these lines go to the process's stderr, past the
 * stdio cap, and the guest chooses how often it is refused and what name it looks up (review s16: 64 lookups of a
 * 1 MiB name and 20,000 refused connects wrote 68 MB under a 64 KiB cap). At most MAX_DENIAL_LINES lines, then
 * one saying the rest are not logged; the address is cut and quoted (no terminal escapes reach the log).
 */
export function boundedDenialLog(write: (line: string) => void, maxLines = MAX_DENIAL_LINES): (d: { op: string; address: string; reason: string }) => void {
  let lines = 0;
  return (d) => {
    if (lines > maxLines) return;
    if (lines++ === maxLines) {
      write(`[iii: more network refusals, not logged (at most ${maxLines} per run)]\n`);
      return;
    }
    const cut = d.address.length > MAX_DENIAL_ADDRESS_CHARS ? `${d.address.slice(0, MAX_DENIAL_ADDRESS_CHARS)}…` : d.address;
    const shown = /^[\x21-\x7e]*$/.test(cut) ? cut : JSON.stringify(cut);
    write(`[iii: network ${d.op} ${shown} refused: ${d.reason}]\n`);
  };
}

/** The methods of preview2-shim's OutputStream resource that move bytes. */
interface ShimOutputStream {
  write(bytes: Uint8Array): void;
  blockingWriteAndFlush(bytes: Uint8Array): void;
  writeZeroes(len: bigint): void;
  blockingWriteZeroesAndFlush(len: bigint): void;
  splice(from: unknown, len: bigint): bigint;
  blockingSplice(from: unknown, len: bigint): bigint;
}

/**
 * At most `cap` bytes per stdio stream per run, then one marker line and the rest discarded (reported as
 * written, as for preview 1). The stream object itself is patched, not replaced: jco checks that a returned
 * resource is the shim's own OutputStream class.
 */
export function capOutputStream(stream: ShimOutputStream, name: string, cap: number): void {
  let written = 0;
  let truncated = false;
  const original = {
    write: stream.write.bind(stream),
    blockingWriteAndFlush: stream.blockingWriteAndFlush.bind(stream),
    writeZeroes: stream.writeZeroes.bind(stream),
    blockingWriteZeroesAndFlush: stream.blockingWriteZeroesAndFlush.bind(stream),
    splice: stream.splice.bind(stream),
    blockingSplice: stream.blockingSplice.bind(stream),
  };
  /** How many of `n` bytes may still go out. */
  const room = (n: number): number => {
    const allowed = Math.min(n, Math.max(0, cap - written));
    written += allowed;
    return allowed;
  };
  /** After a write that hit the cap: the marker, once, right behind the last bytes kept. */
  const mark = (offered: number, kept: number) => {
    if (kept === offered || truncated) return;
    truncated = true;
    try {
      original.blockingWriteAndFlush(new TextEncoder().encode(`\n[iii: ${name} truncated after ${cap} bytes]\n`));
    } catch {
      // the stream is closed; nothing to tell
    }
  };
  const keep = (bytes: Uint8Array, send: (b: Uint8Array) => void) => {
    const n = room(bytes.byteLength);
    if (n > 0) send(n === bytes.byteLength ? bytes : bytes.subarray(0, n));
    mark(bytes.byteLength, n);
  };
  const keepZeroes = (len: bigint, send: (n: bigint) => void) => {
    const n = room(Number(len));
    if (n > 0) send(BigInt(n));
    mark(Number(len), n);
  };
  stream.write = (bytes) => keep(bytes, original.write);
  stream.blockingWriteAndFlush = (bytes) => keep(bytes, original.blockingWriteAndFlush);
  stream.writeZeroes = (len) => keepZeroes(len, original.writeZeroes);
  stream.blockingWriteZeroesAndFlush = (len) => keepZeroes(len, original.blockingWriteZeroesAndFlush);
  // past the cap a splice still drains its source (so a copy loop ends), the bytes discarded
  const splice = (from: unknown, len: bigint, send: (from: unknown, len: bigint) => bigint): bigint => {
    const n = room(Number(len));
    if (n > 0) return send(from, BigInt(n));
    mark(Number(len), 0);
    return BigInt((from as { read(len: bigint): Uint8Array }).read(len).byteLength);
  };
  stream.splice = (from, len) => splice(from, len, original.splice);
  stream.blockingSplice = (from, len) => splice(from, len, original.blockingSplice);
}

interface Handler {
  functions(): unknown;
  invoke(functionId: string, payload: string): unknown;
}

const FUNCTION_ID = /^[A-Za-z0-9_.:-]{1,128}$/;
const MAX_FUNCTIONS = 256;

/** The iii:worker/wasm-worker world: report the functions, then answer `invoke` messages one at a time. */
function serveHandler(handler: Handler, started: () => void): void {
  const listed = handler.functions();
  if (!Array.isArray(listed) || listed.length === 0) throw new Error("handler.functions() returned no function ids");
  if (listed.length > MAX_FUNCTIONS) throw new Error(`handler.functions() returned ${listed.length} ids (at most ${MAX_FUNCTIONS})`);
  for (const id of listed) {
    if (typeof id !== "string" || !FUNCTION_ID.test(id)) throw new Error(`handler.functions() returned an invalid function id ${JSON.stringify(id).slice(0, 80)}`);
  }
  const functions = [...new Set(listed as string[])];
  post({ event: "serve", functions });
  started();
  parentPort!.on("message", (m: HostMessage) => {
    if (m.event !== "invoke") return;
    let result: WitResult;
    try {
      const value = handler.invoke(m.functionId, m.payload);
      result = typeof value === "string" ? { tag: "ok", val: value } : { tag: "err", val: "handler.invoke returned no string" };
    } catch (error) {
      // jco throws a ComponentError carrying the WIT `err` payload; anything else is a trap in the guest
      const payload = (error as { payload?: unknown }).payload;
      if (typeof payload !== "string") throw error;
      result = { tag: "err", val: payload };
    }
    post({ event: "result", id: m.id, result });
  });
}

function post(message: GuestMessage, transfer: import("node:worker_threads").Transferable[] = []): void {
  parentPort!.postMessage(message, transfer);
}

/** How long a component's `engine.trigger` may block its thread. */
const TRIGGER_TIMEOUT_MS = 30_000;

/**
 * `engine.trigger` is a synchronous import and the engine connection lives on the runner's main thread: the
 * call posts a request with a fresh reply port and a shared flag, blocks in Atomics.wait until the runner sets
 * the flag, then takes the reply off the port synchronously.
 */
function installEngineBridge(): void {
  const bridge: EngineBridge = {
    trigger(functionId: string, payload: string): WitResult {
      const flag = new SharedArrayBuffer(4);
      const { port1, port2 } = new MessageChannel();
      try {
        post({ event: "trigger", functionId, payload, flag, reply: port2 }, [port2]);
        if (Atomics.wait(new Int32Array(flag), 0, 0, TRIGGER_TIMEOUT_MS) === "timed-out") {
          return { tag: "err", val: `engine.trigger ${functionId}: no answer within ${TRIGGER_TIMEOUT_MS / 1000} s` };
        }
        const reply = receiveMessageOnPort(port1);
        return (reply?.message as WitResult | undefined) ?? { tag: "err", val: "engine.trigger: the runner sent no result" };
      } finally {
        port1.close();
      }
    },
  };
  (globalThis as { [ENGINE_BRIDGE]?: EngineBridge })[ENGINE_BRIDGE] = bridge;
}

/**
 * A Worker created with `execArgv: []` runs WITHOUT Node's permission model (measured on Node 24.21: such a
 * worker creates files outside --allow-fs-write; a worker with the default execArgv is refused), and
 * preview2-shim creates its I/O worker — the thread that opens files and sockets — with exactly that option.
 * So before the shim loads, every Worker this thread creates gets its execArgv dropped (inherit: permission
 * model included).
 */
export function keepWorkersUnderPermissionModel(): void {
  const threads = createRequire(import.meta.url)("node:worker_threads") as typeof import("node:worker_threads");
  const Original = threads.Worker;
  if ((Original as unknown as { iiiGuarded?: boolean }).iiiGuarded) return;
  class InheritingWorker extends Original {
    static iiiGuarded = true;
    constructor(filename: string | URL, options: import("node:worker_threads").WorkerOptions = {}) {
      const { execArgv: _dropped, ...rest } = options;
      super(filename, rest);
    }
  }
  threads.Worker = InheritingWorker as typeof Original;
  syncBuiltinESMExports();
}
