import { IiiError } from "../errors.js";

/** A core module (WASI preview 1) or a component (WASI preview 2). */
export type WasmKind = "module" | "component";

const MAGIC = [0x00, 0x61, 0x73, 0x6d];

/**
 * The kind of a WebAssembly binary from its 8-byte header: magic `\0asm`, a 16-bit version, then a 16-bit
 * layer. Layer 0 is a core module (version 1), layer 1 a component (whatever its version: `0d 00` today). The
 * decision is the layer field, not a version threshold, so a component binary format reaching version 1 stays
 * a component.
 */
export function detectWasmKind(bytes: Uint8Array, what = "the binary"): WasmKind {
  if (bytes.length < 8 || MAGIC.some((b, i) => bytes[i] !== b)) {
    throw new IiiError("WasmInvalid", `${what} is not a WebAssembly binary (no \\0asm header)`);
  }
  const version = bytes[4]! | (bytes[5]! << 8);
  const layer = bytes[6]! | (bytes[7]! << 8);
  if (layer === 0) {
    if (version !== 1) throw new IiiError("WasmInvalid", `${what}: core module version ${version} is not supported (expected 1)`);
    return "module";
  }
  if (layer === 1) return "component";
  throw new IiiError("WasmInvalid", `${what}: unknown WebAssembly layer ${layer}`);
}

/** OCI layer media types that carry a WebAssembly binary. */
export const WASM_MEDIA_TYPES = [
  "application/wasm",
  "application/vnd.wasm.content.layer.v1+wasm",
  "application/vnd.bytecodealliance.wasm.component.layer.v0+wasm",
] as const;
