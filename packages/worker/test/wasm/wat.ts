import wabtInit from "wabt";

let wabt: Awaited<ReturnType<typeof wabtInit>> | undefined;

/** Assembles WebAssembly text with wabt (a real assembler; nothing is hand-faked). */
export async function wat(source: string, features: { multi_memory?: boolean } = {}): Promise<Uint8Array> {
  wabt ??= await wabtInit();
  // wabt's typings predate its multi_memory feature flag (the assembler itself has it)
  const module = wabt.parseWat("test.wat", source, features as Record<string, boolean>);
  try {
    return new Uint8Array(module.toBinary({}).buffer);
  } finally {
    module.destroy();
  }
}

const IMPORTS = `
 (import "wasi_snapshot_preview1" "fd_write" (func $fd_write (param i32 i32 i32 i32) (result i32)))
 (import "wasi_snapshot_preview1" "path_open" (func $path_open (param i32 i32 i32 i32 i32 i64 i64 i32 i32) (result i32)))
 (import "wasi_snapshot_preview1" "proc_exit" (func $proc_exit (param i32)))`;

const escape = (text: string) => [...new TextEncoder().encode(text)].map((b) => `\\${b.toString(16).padStart(2, "0")}`).join("");

/** Writes `text` to stdout, then exits with `code`. */
export const exitWith = (code: number, text: string) => `(module ${IMPORTS}
 (memory (export "memory") 1)
 (data (i32.const 0) "\\10\\00\\00\\00${escape(String.fromCharCode(text.length))}\\00\\00\\00")
 (data (i32.const 16) "${escape(text)}")
 (func (export "_start") (drop (call $fd_write (i32.const 1) (i32.const 0) (i32.const 1) (i32.const 8))) (call $proc_exit (i32.const ${code}))))`;

/** path_open(fd 3 = the first dir, path, oflags, rights) and exit with its errno (0: it opened). */
export const openAt = (path: string, oflags: number, rights: bigint) => `(module ${IMPORTS}
 (memory (export "memory") 1)
 (data (i32.const 64) "${escape(path)}")
 (func (export "_start")
  (call $proc_exit (call $path_open (i32.const 3) (i32.const 1) (i32.const 64) (i32.const ${new TextEncoder().encode(path).length})
    (i32.const ${oflags}) (i64.const ${rights}) (i64.const ${rights}) (i32.const 0) (i32.const 32)))))`;

/** Grows its memory by `pages`; exits 42 when memory.grow refused (-1), 0 when it grew. */
export const growBy = (pages: number, initial = 1) => `(module ${IMPORTS}
 (memory (export "memory") ${initial})
 (func (export "_start")
  (if (i32.eq (memory.grow (i32.const ${pages})) (i32.const -1)) (then (call $proc_exit (i32.const 42))))
  (call $proc_exit (i32.const 0))))`;

export const spin = `(module ${IMPORTS}
 (memory (export "memory") 1)
 (func (export "_start") (loop $l (br $l))))`;

/** Writes a 64 KiB buffer to stdout `times` times, then exits 0. */
export const flood = (times: number) => `(module ${IMPORTS}
 (memory (export "memory") 2)
 (func (export "_start") (local $i i32)
  (i32.store (i32.const 0) (i32.const 65536))
  (i32.store (i32.const 4) (i32.const 65536))
  (memory.fill (i32.const 65536) (i32.const 65) (i32.const 65536))
  (loop $l
   (drop (call $fd_write (i32.const 1) (i32.const 0) (i32.const 1) (i32.const 8)))
   (local.set $i (i32.add (local.get $i) (i32.const 1)))
   (br_if $l (i32.lt_u (local.get $i) (i32.const ${times}))))
  (call $proc_exit (i32.const 0))))`;

export const RIGHT_FD_READ = 1n << 1n;
export const RIGHT_FD_WRITE = 1n << 6n;
export const O_CREAT = 1;
export const O_TRUNC = 8;

/** Two memories, each grown by `pages` (with the limit per memory, twice what one may hold); exits 0. */
export const twoMemories = (pages: number) => `(module ${IMPORTS}
 (memory (export "memory") 1)
 (memory $second 1)
 (func (export "_start")
  (drop (memory.grow (i32.const ${pages})))
  (drop (memory.grow $second (i32.const ${pages})))
  (call $proc_exit (i32.const 0))))`;

/** A module importing one memory and defining another. */
export const importedAndDefinedMemory = `(module
 (import "env" "shared" (memory 1))
 (memory (export "memory") 1)
 (func (export "_start")))`;

const uleb = (n: number): number[] => {
  const out: number[] = [];
  do {
    let b = n & 0x7f;
    n >>>= 7;
    if (n) b |= 0x80;
    out.push(b);
  } while (n);
  return out;
};
const sleb = (n: number): number[] => {
  const out: number[] = [];
  for (;;) {
    const b = n & 0x7f;
    n >>= 7;
    if ((n === 0 && !(b & 0x40)) || (n === -1 && b & 0x40)) return [...out, b];
    out.push(b | 0x80);
  }
};
const section = (id: number, content: number[]) => [id, ...uleb(content.length), ...content];
const text = (s: string) => [...uleb(s.length), ...new TextEncoder().encode(s)];

/**
 * A WasmGC module (hand-encoded: wabt does not assemble GC instructions): `count` arrays of `bytesEach` i8
 * (array.new_default), each kept alive in an anyref table (or, `keep` false, each dropped for the next), then
 * `_start` returns (exit 0). The arrays live in
 * the V8 heap, where the linear memory cap does not look. One linear memory of one page, exported for WASI.
 */
export function gcHoarder(count: number, bytesEach: number, keep = true): Uint8Array {
  const body = [
    ...[1, 1, 0x7f], // one i32 local: the index
    ...[0x03, 0x40], // loop
    ...(keep ? [0x20, 0] : [0x41, 0]), // table slot: the index (kept), or always 0 (the previous one is garbage)
    ...[0x41, ...sleb(bytesEach)], // i32.const length
    ...[0xfb, 0x07, 0], // array.new_default type 0
    ...[0x26, 0], // table.set 0
    ...[0x20, 0, 0x41, 1, 0x6a, 0x22, 0], // i = i + 1 (local.tee)
    ...[0x41, ...sleb(count), 0x49, 0x0d, 0], // br_if loop (i < count)
    0x0b, // end loop
    0x0b, // end func
  ];
  return new Uint8Array([
    ...[0x00, 0x61, 0x73, 0x6d, 0x01, 0x00, 0x00, 0x00],
    ...section(1, [2, 0x5e, 0x78, 0x01, 0x60, 0, 0]), // types: (array (mut i8)), (func)
    ...section(3, [1, 1]), // one function of type 1
    ...section(4, [1, 0x6e, 0x00, ...uleb(keep ? count : 1)]), // table: `count` anyref (1 if not kept)
    ...section(5, [1, 0x00, 1]), // memory: 1 page
    ...section(7, [2, ...text("memory"), 0x02, 0, ...text("_start"), 0x00, 0]),
    ...section(10, [1, ...uleb(body.length), ...body]),
  ]);
}

const HOSTILE_IMPORTS = `${IMPORTS}
 (import "wasi_snapshot_preview1" "path_symlink" (func $path_symlink (param i32 i32 i32 i32 i32) (result i32)))
 (import "wasi_snapshot_preview1" "path_rename" (func $path_rename (param i32 i32 i32 i32 i32 i32) (result i32)))
 (import "wasi_snapshot_preview1" "fd_renumber" (func $fd_renumber (param i32 i32) (result i32)))
 (import "wasi_snapshot_preview1" "fd_pwrite" (func $fd_pwrite (param i32 i32 i32 i64 i32) (result i32)))
 (import "wasi_snapshot_preview1" "fd_filestat_set_size" (func $fd_filestat_set_size (param i32 i64) (result i32)))`;

const utf8Length = (text: string) => new TextEncoder().encode(text).length;

/**
 * In the first dir (fd 3): makes each `[target, name]` symlink (failures ignored), renames each `[from, to]`
 * (failures ignored), then creates `path` (O_CREAT|O_TRUNC) and writes "pwned\n" into it. Exits 0 when the
 * file was written, 100 + errno when path_open failed.
 */
export const linkGamesThenCreate = (links: [string, string][], renames: [string, string][], path: string) => {
  let at = 1024;
  const data: string[] = [];
  const place = (text: string) => {
    const ptr = at;
    data.push(`(data (i32.const ${ptr}) "${escape(text)}")`);
    at += utf8Length(text) + 8;
    return ptr;
  };
  const body = [
    ...links.map(([target, name]) => `(drop (call $path_symlink (i32.const ${place(target)}) (i32.const ${utf8Length(target)}) (i32.const 3) (i32.const ${place(name)}) (i32.const ${utf8Length(name)})))`),
    ...renames.map(([from, to]) => `(drop (call $path_rename (i32.const 3) (i32.const ${place(from)}) (i32.const ${utf8Length(from)}) (i32.const 3) (i32.const ${place(to)}) (i32.const ${utf8Length(to)})))`),
  ];
  const p = place(path);
  const pwned = place("pwned\n");
  return `(module ${HOSTILE_IMPORTS}
 (memory (export "memory") 1)
 ${data.join("\n ")}
 (func (export "_start") (local $rc i32)
  ${body.join("\n  ")}
  (local.set $rc (call $path_open (i32.const 3) (i32.const 0) (i32.const ${p}) (i32.const ${utf8Length(path)}) (i32.const 9) (i64.const 64) (i64.const 64) (i32.const 0) (i32.const 32)))
  (if (local.get $rc) (then (call $proc_exit (i32.add (i32.const 100) (local.get $rc)))))
  (i32.store (i32.const 16) (i32.const ${pwned}))
  (i32.store (i32.const 20) (i32.const 6))
  (drop (call $fd_write (i32.load (i32.const 32)) (i32.const 16) (i32.const 1) (i32.const 8)))
  (call $proc_exit (i32.const 0))))`;
};

/** fd_renumber(3, 3), then creates `name` in fd 3 (O_CREAT). Exits 0 when it opened, else 100 + errno. */
export const renumberSelfThenCreate = (name: string) => `(module ${HOSTILE_IMPORTS}
 (memory (export "memory") 1)
 (data (i32.const 64) "${escape(name)}")
 (func (export "_start") (local $rc i32)
  (drop (call $fd_renumber (i32.const 3) (i32.const 3)))
  (local.set $rc (call $path_open (i32.const 3) (i32.const 0) (i32.const 64) (i32.const ${utf8Length(name)}) (i32.const 1) (i64.const 64) (i64.const 64) (i32.const 0) (i32.const 32)))
  (if (local.get $rc) (then (call $proc_exit (i32.add (i32.const 100) (local.get $rc)))))
  (call $proc_exit (i32.const 0))))`;

/**
 * Every way around the stdout cap tried at once, each with 64 KiB buffers: `times` positional writes to fd 1,
 * one fd_write of 1,024 iovecs that all point at the same 64 KiB (64 MiB in one call), fd 1 resized to 1 GiB,
 * then fd 1 renumbered onto fd 0 and `times` writes to fd 0. Exits 0.
 */
export const stdioCapBypass = (times: number) => `(module ${HOSTILE_IMPORTS}
 (memory (export "memory") 2)
 (func (export "_start") (local $i i32)
  (memory.fill (i32.const 65536) (i32.const 66) (i32.const 65536))
  (loop $iov
   (i32.store (i32.add (i32.const 1024) (i32.mul (local.get $i) (i32.const 8))) (i32.const 65536))
   (i32.store (i32.add (i32.const 1028) (i32.mul (local.get $i) (i32.const 8))) (i32.const 65536))
   (local.set $i (i32.add (local.get $i) (i32.const 1)))
   (br_if $iov (i32.lt_u (local.get $i) (i32.const 1024))))
  (local.set $i (i32.const 0))
  (loop $p
   (drop (call $fd_pwrite (i32.const 1) (i32.const 1024) (i32.const 1) (i64.const 0) (i32.const 8)))
   (local.set $i (i32.add (local.get $i) (i32.const 1)))
   (br_if $p (i32.lt_u (local.get $i) (i32.const ${times}))))
  (drop (call $fd_write (i32.const 1) (i32.const 1024) (i32.const 1024) (i32.const 8)))
  (drop (call $fd_filestat_set_size (i32.const 1) (i64.const 1073741824)))
  (drop (call $fd_renumber (i32.const 1) (i32.const 0)))
  (local.set $i (i32.const 0))
  (loop $w
   (drop (call $fd_write (i32.const 0) (i32.const 1024) (i32.const 1) (i32.const 8)))
   (local.set $i (i32.add (local.get $i) (i32.const 1)))
   (br_if $w (i32.lt_u (local.get $i) (i32.const ${times}))))
  (call $proc_exit (i32.const 0))))`;

/** Spins in its start function, which runs while the module is instantiated (before `_start`). */
export const spinInStartFunction = `(module ${IMPORTS}
 (memory (export "memory") 1)
 (func $spin (loop $l (br $l)))
 (start $spin)
 (func (export "_start")))`;
