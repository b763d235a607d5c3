/**
 * A small WebAssembly module (SIMD) that sums 16-bit words for the Internet checksum, and owns a
 * fixed 12 MiB memory carved into 1 MiB slabs that the frame transport builds outgoing frames in.
 * A frame built in one of these slabs is checksummed in place by the SIMD loop (16 bytes a step,
 * ~3x the JavaScript loop on a 64 KiB segment and more on 1,460-byte ones, with no view object
 * allocated per call); other bytes of at least 512 (frames from the VM) are copied into a scratch
 * slab and summed there; shorter ones use the JavaScript loop (checksum.ts).
 *
 * The memory is never grown (that would detach the ArrayBuffer every slab is a view of). When all
 * slabs are out (several stacks in one process, or a deep write queue), callers fall back to plain
 * buffers. When WebAssembly or SIMD is unavailable, there are no slabs and `sumWords` is undefined.
 *
 * Source (wabt `wat2wasm --enable-simd`), kept here so the bytes can be checked and rebuilt:
 *
 *   (module
 *     (memory (export "memory") 192 192)
 *     (func (export "sum") (param $p i32) (param $n i32) (result i32)
 *       (local $end i32) (local $blockEnd i32) (local $vend i32) (local $acc v128) (local $s i64)
 *       (local.set $end (i32.add (local.get $p) (local.get $n)))
 *       (local.set $vend (i32.sub (local.get $end) (i32.and (local.get $n) (i32.const 15))))
 *       (block $vdone (loop $blocks
 *         (br_if $vdone (i32.ge_u (local.get $p) (local.get $vend)))
 *         (local.set $blockEnd (i32.add (local.get $p) (i32.const 32768)))
 *         (if (i32.gt_u (local.get $blockEnd) (local.get $vend)) (then (local.set $blockEnd (local.get $vend))))
 *         (local.set $acc (v128.const i32x4 0 0 0 0))
 *         (loop $vec
 *           (local.set $acc (i32x4.add (local.get $acc) (i32x4.extadd_pairwise_i16x8_u (v128.load align=1 (local.get $p)))))
 *           (local.set $p (i32.add (local.get $p) (i32.const 16)))
 *           (br_if $vec (i32.lt_u (local.get $p) (local.get $blockEnd))))
 *         (local.set $s (i64.add (local.get $s) (i64.add
 *           (i64.add (i64.extend_i32_u (i32x4.extract_lane 0 (local.get $acc))) (i64.extend_i32_u (i32x4.extract_lane 1 (local.get $acc))))
 *           (i64.add (i64.extend_i32_u (i32x4.extract_lane 2 (local.get $acc))) (i64.extend_i32_u (i32x4.extract_lane 3 (local.get $acc)))))))
 *         (br $blocks)))
 *       (block $wdone (loop $words
 *         (br_if $wdone (i32.gt_u (i32.add (local.get $p) (i32.const 2)) (local.get $end)))
 *         (local.set $s (i64.add (local.get $s) (i64.load16_u align=1 (local.get $p))))
 *         (local.set $p (i32.add (local.get $p) (i32.const 2)))
 *         (br $words)))
 *       (if (i32.lt_u (local.get $p) (local.get $end))
 *         (then (local.set $s (i64.add (local.get $s) (i64.load8_u (local.get $p))))))
 *       (block $fdone (loop $fold
 *         (br_if $fdone (i64.le_u (local.get $s) (i64.const 0xffff)))
 *         (local.set $s (i64.add (i64.and (local.get $s) (i64.const 0xffff)) (i64.shr_u (local.get $s) (i64.const 16))))
 *         (br $fold)))
 *       (i32.wrap_i64 (local.get $s))))
 *
 * A 32-bit lane gains at most 2 x 65,535 per 16-byte step, and the lanes are spilled into the
 * 64-bit total every 32 KiB (2,048 steps), far below overflow.
 */
const WASM_BASE64 =
  "AGFzbQEAAAABBwFgAn9/AX8DAgEABQYBAcABwAEHEAIGbWVtb3J5AgADc3VtAAAK7AEB6QEDA38BewF+IAAgAWohAiACIAFBD3FrIQQCQANAIAAgBE8NASAAQYCAAmohAyADIARLBEAgBCEDC/0MAAAAAAAAAAAAAAAAAAAAACEFA0AgBSAA/QAAAP1//a4BIQUgAEEQaiEAIAAgA0kNAAsgBiAF/RsArSAF/RsBrXwgBf0bAq0gBf0bA618fHwhBgwACwsCQANAIABBAmogAksNASAGIAAzAAB8IQYgAEECaiEADAALCyAAIAJJBEAgBiAAMQAAfCEGCwJAA0AgBkL//wNYDQEgBkL//wODIAZCEIh8IQYMAAsLIAanCw==";

/** Size of one slab (the frame transport's slab size); the memory holds 11 frame slabs and the scratch one. */
export const SIMD_SLAB_BYTES = 1024 * 1024;

/**
 * Bytes from elsewhere (frames from the VM) at least this long are copied into the scratch slab and
 * summed there: memcpy plus the SIMD loop beats the JavaScript loop from ~512 bytes (1,480 bytes:
 * ~120-220 ns against ~270; 64 KiB: ~3.2 us against ~8.2).
 */
const COPY_MIN_BYTES = 512;

let sum: ((p: number, n: number) => number) | undefined;
let memoryBuffer: ArrayBuffer | undefined;
const freeSlabs: Buffer[] = [];
/** The last slab: where bytes from outside the memory are copied to be summed (never handed out). */
let scratch: Uint8Array | undefined;

/** The part of the WebAssembly API used here (the package's TypeScript lib has no DOM/wasm types). */
interface WasmApi {
  Module: new (bytes: Uint8Array) => object;
  Instance: new (module: object) => { exports: { sum: (p: number, n: number) => number; memory: { buffer: ArrayBuffer } } };
}

try {
  const wasm = (globalThis as unknown as { WebAssembly: WasmApi }).WebAssembly;
  const { exports } = new wasm.Instance(new wasm.Module(Buffer.from(WASM_BASE64, "base64")));
  const buffer = exports.memory.buffer;
  for (let o = 0; o + SIMD_SLAB_BYTES <= buffer.byteLength; o += SIMD_SLAB_BYTES) {
    freeSlabs.push(Buffer.from(buffer, o, SIMD_SLAB_BYTES));
  }
  scratch = freeSlabs.pop();
  sum = exports.sum;
  memoryBuffer = buffer;
} catch {
  // No WebAssembly SIMD here: plain buffers and the JavaScript checksum.
  sum = undefined;
  memoryBuffer = undefined;
  freeSlabs.length = 0;
  scratch = undefined;
}

/**
 * The folded (16-bit, not complemented) ones' complement sum of `buf[offset, offset+length)` in
 * network byte order: in place when `buf` is in the SIMD memory, through the scratch slab when it
 * is at least COPY_MIN_BYTES long; -1 otherwise (or without WebAssembly SIMD).
 */
export function simdSum(buf: Uint8Array, offset: number, length: number): number {
  if (sum === undefined) return -1;
  let p: number;
  if (buf.buffer === memoryBuffer) {
    p = buf.byteOffset + offset;
  } else if (length >= COPY_MIN_BYTES && scratch !== undefined && length <= scratch.length) {
    scratch.set(new Uint8Array(buf.buffer, buf.byteOffset + offset, length));
    p = scratch.byteOffset;
  } else {
    return -1;
  }
  const le = sum(p, length);
  return ((le & 0xff) << 8) | (le >>> 8);
}

/** A free 1 MiB slab in the SIMD memory, or undefined when none is left. */
export function takeSimdSlab(): Buffer | undefined {
  return freeSlabs.pop();
}

/** Gives back a slab from takeSimdSlab() (nothing may still read or write it). */
export function returnSimdSlab(slab: Buffer): void {
  if (slab.buffer === memoryBuffer && slab.length === SIMD_SLAB_BYTES && !freeSlabs.includes(slab)) freeSlabs.push(slab);
}

/** Whether `buf` is one of the SIMD memory's slabs. */
export function isSimdSlab(buf: Buffer): boolean {
  return buf.buffer === memoryBuffer && buf.length === SIMD_SLAB_BYTES;
}

/** Slabs currently free (for tests). */
export function freeSimdSlabs(): number {
  return freeSlabs.length;
}
