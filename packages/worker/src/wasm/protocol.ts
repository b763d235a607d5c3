import type { MessagePort } from "node:worker_threads";
import type { WasmKind } from "./kind.js";

/** What the controller leaves beside WASI_CONFIG for the runner (wasm-launch.json). */
export interface WasmLaunch {
  name: string;
  /** Absolute path of the .wasm binary. */
  module: string;
  kind: WasmKind;
  /** sha256 of the binary. */
  digest: string;
  /** Components: the directory of the jco transpilation (an ES module `component.js`). */
  transpiled?: string;
  /** Most bytes kept per stdio stream per run. */
  stdioCapBytes: number;
}

/** The worker thread's input. */
export interface GuestData {
  launch: WasmLaunch;
  configText: string;
  stdoutFd: number;
  stderrFd: number;
}

/** A WIT `result<string, string>` as jco passes it to and from JavaScript. */
export type WitResult = { tag: "ok"; val: string } | { tag: "err"; val: string };

/** Messages from the worker thread. */
export type GuestMessage =
  | { event: "started" }
  | { event: "exit"; code: number }
  | { event: "failed"; reason: string }
  /** A handler component is up: the runner registers these function ids with the engine. */
  | { event: "serve"; functions: string[] }
  /** The answer to one `invoke`. */
  | { event: "result"; id: number; result: WitResult }
  /**
   * The component called `engine.trigger` (a synchronous import): the guest thread waits on `flag` (an Int32 in
   * shared memory) until the runner has posted the result on `reply` and set the flag to 1.
   */
  | { event: "trigger"; functionId: string; payload: string; flag: SharedArrayBuffer; reply: MessagePort };

/** Messages to the worker thread. */
export type HostMessage = { event: "invoke"; id: number; functionId: string; payload: string };

/** The global under which the guest thread installs the bridge the engine import forwards to. */
export const ENGINE_BRIDGE = Symbol.for("iii.worker.wasm.engine-bridge");

export interface EngineBridge {
  trigger(functionId: string, payload: string): WitResult;
}

export const DEFAULT_STDIO_CAP_BYTES = 16 * 1024 * 1024;
