/**
 * The `iii:worker/engine` import of a component (dist/wasm-engine-import.js, mapped in by jco at transpile
 * time). It only forwards to the bridge the guest thread installs: see `installEngineBridge` in engine-bridge.ts.
 */
import { ENGINE_BRIDGE, type EngineBridge, type WitResult } from "./protocol.js";

export function trigger(functionId: string, payload: string): WitResult {
  const bridge = (globalThis as { [ENGINE_BRIDGE]?: EngineBridge })[ENGINE_BRIDGE];
  if (!bridge) return { tag: "err", val: "no engine connection in this runner" };
  return bridge.trigger(functionId, payload);
}
