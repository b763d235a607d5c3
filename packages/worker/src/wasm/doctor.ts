import { packageInfo } from "./packages.js";

const packageVersion = (name: string) => packageInfo(name)?.version;

/** What `doctor` says about the WASM tier: node:wasi (preview 1) and the permission model, jco + preview2-shim (preview 2). */
export function describeWasmTier(): { ok: boolean; detail: string } {
  const [major, minor] = process.versions.node.split(".").map(Number) as [number, number];
  const permission = major > 23 || (major === 23 && minor >= 5) || major === 22 && minor >= 13;
  const jco = packageVersion("@bytecodealliance/jco");
  const shim = packageVersion("@bytecodealliance/preview2-shim");
  const p2 = jco && shim ? `preview 2 via jco ${jco} + preview2-shim ${shim}` : "preview 2 unavailable (jco/preview2-shim not installed)";
  if (!permission) return { ok: false, detail: `Node ${process.versions.node} lacks the stable permission model (need 22.13+/23.5+)` };
  return { ok: true, detail: `preview 1 on node:wasi (Node ${process.versions.node}, permission model, worker-thread limits); ${p2}; no virtualisation needed` };
}
