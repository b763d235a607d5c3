import wabtInit from "wabt";

let wabt: Awaited<ReturnType<typeof wabtInit>> | undefined;

/** Assembles WebAssembly text with wabt (a real assembler; nothing is hand-faked). */
export async function wat(source: string): Promise<Uint8Array> {
  wabt ??= await wabtInit();
  const module = wabt.parseWat("test.wat", source);
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
