import { IiiError } from "../errors.js";

/**
 * How many linear memories a WebAssembly binary can create, read from its sections (no compilation).
 *
 * `--wasm-max-mem-pages` caps each memory, not the guest: with multi-memory (on by default in Node 24's V8) a
 * module declaring N memories gets N times the limit. So the tier runs only binaries whose every core module
 * has at most one memory, defined (memory section, id 5) or imported (import section, id 2, kind 0x02).
 * `WebAssembly.Module.imports/exports` cannot say this: a defined memory need not be exported. A component
 * (layer 1) is checked per core module it embeds (section id 1), nested components (id 4) included.
 */
export interface CoreModuleMemories {
  /** Index of the core module in the order the binary holds them (0 for a plain module). */
  index: number;
  imported: number;
  defined: number;
}

export const MAX_MEMORIES_PER_MODULE = 1;

class Reader {
  pos: number;
  constructor(
    readonly bytes: Uint8Array,
    start: number,
    readonly end: number,
  ) {
    this.pos = start;
  }
  byte(): number {
    if (this.pos >= this.end) throw new RangeError("unexpected end");
    return this.bytes[this.pos++]!;
  }
  /** An unsigned or signed LEB128 of at most `maxBytes` bytes (the value itself is only needed for u32). */
  leb(maxBytes = 5): number {
    let result = 0;
    let shift = 0;
    for (let i = 0; i < maxBytes; i++) {
      const b = this.byte();
      if (shift < 32) result += (b & 0x7f) * 2 ** shift;
      shift += 7;
      if (!(b & 0x80)) return result;
    }
    throw new RangeError("LEB128 too long");
  }
  skip(n: number): void {
    if (n > this.end - this.pos) throw new RangeError("unexpected end");
    this.pos += n;
  }
  name(): void {
    this.skip(this.leb());
  }
  /** A value or reference type: one byte, or (ref null? heaptype) with an s33 heap type. */
  valType(): void {
    const t = this.byte();
    if (t === 0x63 || t === 0x64) this.leb(5);
  }
  /** Limits of a table or memory: flags (max present 0x01, shared 0x02, 64-bit 0x04, page size 0x08), min, max. */
  limits(): void {
    const flags = this.leb();
    this.leb(10);
    if (flags & 0x01) this.leb(10);
    if (flags & 0x08) this.leb();
  }
}

/** The memories of one core module's bytes (from its `\0asm` header). */
function countCore(bytes: Uint8Array, start: number, end: number, index: number): CoreModuleMemories {
  const r = new Reader(bytes, start + 8, end);
  let imported = 0;
  let defined = 0;
  while (r.pos < end) {
    const id = r.byte();
    const size = r.leb();
    const sectionEnd = r.pos + size;
    if (sectionEnd > end) throw new RangeError("section past the end");
    if (id === 2) {
      const s = new Reader(bytes, r.pos, sectionEnd);
      for (let n = s.leb(); n > 0; n--) {
        s.name();
        s.name();
        const kind = s.byte();
        if (kind === 0x00) s.leb(); // func: type index
        else if (kind === 0x01) {
          s.valType(); // table: reference type, limits
          s.limits();
        } else if (kind === 0x02) {
          s.limits();
          imported++;
        } else if (kind === 0x03) {
          s.valType(); // global: value type, mutability
          s.byte();
        } else if (kind === 0x04) {
          s.byte(); // tag: attribute, type index
          s.leb();
        } else throw new RangeError(`unknown import kind 0x${kind.toString(16)}`);
      }
    } else if (id === 5) {
      defined += new Reader(bytes, r.pos, sectionEnd).leb();
    }
    r.skip(size);
  }
  return { index, imported, defined };
}

/** Every core module of a component (sections: 1 core module, 4 nested component), in binary order. */
function countComponent(bytes: Uint8Array, start: number, end: number, out: CoreModuleMemories[]): void {
  const r = new Reader(bytes, start + 8, end);
  while (r.pos < end) {
    const id = r.byte();
    const size = r.leb();
    const sectionEnd = r.pos + size;
    if (sectionEnd > end) throw new RangeError("section past the end");
    if (id === 1) out.push(countCore(bytes, r.pos, sectionEnd, out.length));
    else if (id === 4) countComponent(bytes, r.pos, sectionEnd, out);
    r.skip(size);
  }
}

/** The memories of each core module in `bytes` (a core module or a component). Throws RangeError on a malformed binary. */
export function coreModuleMemories(bytes: Uint8Array): CoreModuleMemories[] {
  const layer = bytes.length >= 8 ? bytes[6]! | (bytes[7]! << 8) : -1;
  if (layer === 0) return [countCore(bytes, 0, bytes.length, 0)];
  const out: CoreModuleMemories[] = [];
  countComponent(bytes, 0, bytes.length, out);
  return out;
}

/**
 * Refuses (WasmInvalid) a binary with a core module that defines or imports more than one memory, or whose
 * sections cannot be read: the memory limit is per memory, so only one-memory modules can be held to it.
 */
export function assertOneMemory(bytes: Uint8Array, what: string): void {
  let modules: CoreModuleMemories[];
  try {
    modules = coreModuleMemories(bytes);
  } catch (error) {
    throw new IiiError("WasmInvalid", `${what}: cannot read its sections (${(error as Error).message})`);
  }
  for (const m of modules) {
    const total = m.imported + m.defined;
    if (total > MAX_MEMORIES_PER_MODULE) {
      const which = bytes[6] === 0 ? "the module" : `core module ${m.index} of the component`;
      throw new IiiError(
        "WasmInvalid",
        `${what}: ${which} has ${total} memories (${m.defined} defined, ${m.imported} imported); at most ${MAX_MEMORIES_PER_MODULE} is allowed, the memory limit holds per memory`,
      );
    }
  }
}
