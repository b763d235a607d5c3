/** The parts of the WebAssembly JS API used here (this package compiles without the DOM lib). */
export interface WasmMemory {
  readonly buffer: ArrayBuffer;
}
export interface WasmInstance {
  exports: Record<string, unknown>;
}
interface WasmApi {
  compile(bytes: Uint8Array): Promise<object>;
  instantiate(module: object, imports: object): Promise<WasmInstance>;
  RuntimeError: new (...args: unknown[]) => Error;
  LinkError: new (...args: unknown[]) => Error;
  CompileError: new (...args: unknown[]) => Error;
}
export const WA = (globalThis as unknown as { WebAssembly: WasmApi }).WebAssembly;
