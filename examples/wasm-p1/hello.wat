;; A WASI preview 1 module that runs to completion: it greets, prints each of its arguments on a line of its
;; own, and exits 0. Built with wabt (`node build.mjs`); run with `iii-worker add ./hello.wasm -- one two`.
(module
  (import "wasi_snapshot_preview1" "args_sizes_get" (func $args_sizes_get (param i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "args_get" (func $args_get (param i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "fd_write" (func $fd_write (param i32 i32 i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "proc_exit" (func $proc_exit (param i32)))
  (memory (export "memory") 1)
  (data (i32.const 0) "hello from a WASI preview 1 module\n")
  (data (i32.const 40) "arg: ")
  (data (i32.const 48) "\n")
  ;; 64: argc, 68: size of the argument strings, 100: one iovec, 120: bytes written,
  ;; 1024: argv pointers (at most 768 arguments), 4096: the argument strings
  (func $write (param $ptr i32) (param $len i32)
    (i32.store (i32.const 100) (local.get $ptr))
    (i32.store (i32.const 104) (local.get $len))
    (drop (call $fd_write (i32.const 1) (i32.const 100) (i32.const 1) (i32.const 120))))
  (func $strlen (param $p i32) (result i32) (local $n i32)
    (block $done
      (loop $next
        (br_if $done (i32.eqz (i32.load8_u (i32.add (local.get $p) (local.get $n)))))
        (local.set $n (i32.add (local.get $n) (i32.const 1)))
        (br $next)))
    (local.get $n))
  (func (export "_start") (local $i i32) (local $arg i32)
    (call $write (i32.const 0) (i32.const 35))
    (drop (call $args_sizes_get (i32.const 64) (i32.const 68)))
    ;; arguments that would not fit this one page: exit 2
    (if (i32.or (i32.gt_u (i32.load (i32.const 64)) (i32.const 768)) (i32.gt_u (i32.load (i32.const 68)) (i32.const 61440)))
      (then (call $proc_exit (i32.const 2))))
    (drop (call $args_get (i32.const 1024) (i32.const 4096)))
    ;; argv[0] is the worker's name
    (local.set $i (i32.const 1))
    (block $end
      (loop $each
        (br_if $end (i32.ge_u (local.get $i) (i32.load (i32.const 64))))
        (local.set $arg (i32.load (i32.add (i32.const 1024) (i32.mul (local.get $i) (i32.const 4)))))
        (call $write (i32.const 40) (i32.const 5))
        (call $write (local.get $arg) (call $strlen (local.get $arg)))
        (call $write (i32.const 48) (i32.const 1))
        (local.set $i (i32.add (local.get $i) (i32.const 1)))
        (br $each)))
    (call $proc_exit (i32.const 0))))
