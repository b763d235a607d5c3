/**
 * The worker thread of a WASM runner: instantiates the guest and runs it to its end. The runner's main thread
 * owns the limits (it terminates this thread on timeout, CPU budget or stop).
 */
import { readFileSync } from "node:fs";
import { WASI } from "node:wasi";
import { parentPort, workerData } from "node:worker_threads";
import { parseWasiConfig } from "./config.js";
import { guardWasiImports } from "./guard.js";
import { assertOneMemory } from "./memories.js";
import { WA, type WasmMemory, type WasmInstance } from "./wa.js";
import type { GuestData, GuestMessage } from "./protocol.js";

const post = (message: GuestMessage) => parentPort!.postMessage(message);

function describe(error: unknown): string {
  const e = error as Error;
  const text = String(e?.message ?? error);
  if (e?.name === "IiiError") return text;
  if (e instanceof RangeError || /allocate|out of memory/i.test(text)) return `memory limit: ${text}`;
  const err = error as object;
  if (err instanceof WA.RuntimeError) return `trap: ${text}`;
  if (err instanceof WA.LinkError) return `link error: ${text}`;
  if (err instanceof WA.CompileError) return `invalid module: ${text}`;
  const resource = (e as { resource?: string } | undefined)?.resource;
  return `${e?.name ?? "Error"}: ${text}${resource ? ` (${resource})` : ""}`;
}

async function runModule(data: GuestData): Promise<void> {
  const config = parseWasiConfig(data.configText);
  const preopens: Record<string, string> = {};
  const readOnlyFds: number[] = [];
  config.dirs.forEach((d, i) => {
    preopens[d.guestPath] = d.hostPath;
    if (d.readOnly) readOnlyFds.push(3 + i);
  });
  const wasi = new WASI({
    version: "preview1",
    args: config.args,
    env: config.env,
    preopens,
    returnOnExit: true,
    stdout: data.stdoutFd,
    stderr: data.stderrFd,
  });
  const bytes = readFileSync(data.launch.module);
  // checked again on the bytes compiled here (the controller checked the file at start)
  assertOneMemory(bytes, data.launch.module);
  const module = await WA.compile(bytes);
  let memory: WasmMemory | undefined;
  const base = wasi.getImportObject() as { wasi_snapshot_preview1: Record<string, (...a: (number | bigint)[]) => number> };
  const guarded = guardWasiImports(base.wasi_snapshot_preview1, {
    readOnlyFds,
    memory: () => memory!,
    stdioCapBytes: data.launch.stdioCapBytes,
    stdioHostFds: { 1: data.stdoutFd, 2: data.stderrFd },
  });
  const instance = await WA.instantiate(module, { wasi_snapshot_preview1: guarded });
  memory = instance.exports.memory as WasmMemory;
  post({ event: "started" });
  const code = wasi.start(instance as never);
  post({ event: "exit", code });
}

async function runComponent(data: GuestData): Promise<void> {
  const { runComponentGuest } = await import("./component-guest.js");
  await runComponentGuest(data, () => post({ event: "started" }), (code) => post({ event: "exit", code }));
}

const data = workerData as GuestData;
try {
  if (data.launch.kind === "module") await runModule(data);
  else await runComponent(data);
} catch (error) {
  post({ event: "failed", reason: describe(error) });
}
