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

/** Messages from the worker thread. */
export type GuestMessage =
  | { event: "started" }
  | { event: "exit"; code: number }
  | { event: "failed"; reason: string };

export const DEFAULT_STDIO_CAP_BYTES = 16 * 1024 * 1024;
