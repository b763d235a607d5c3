import { existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync, symlinkSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { setTimeout as sleep } from "node:timers/promises";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { runWorkerCli } from "../helpers.js";
import { coreModuleMemories } from "../../src/wasm/memories.js";
import { assertNoLinksOut } from "../../src/wasm/mount-links.js";
import {
  exitWith,
  flood,
  gcHoarder,
  growBy,
  importedAndDefinedMemory,
  linkGamesThenCreate,
  O_CREAT,
  O_TRUNC,
  openAt,
  renumberSelfThenCreate,
  RIGHT_FD_READ,
  RIGHT_FD_WRITE,
  spin,
  spinInStartFunction,
  stdioCapBypass,
  twoMemories,
  wat,
} from "./wat.js";

// Real runner processes (node --permission, node:wasi in a worker thread), started through the built CLI.
let root: string;
let home: string;
let n = 0;
beforeAll(() => {
  root = mkdtempSync(join(tmpdir(), "iii-wasm-"));
  home = join(root, "home");
});
afterAll(() => rmSync(root, { recursive: true, force: true }));

interface Row {
  name: string;
  status: string;
  pid: number | null;
  tier: string;
  lastExit: { code: number | null; reason: string; state?: string; durationMs?: number; maxRssKb?: number } | null;
}

async function cli(project: string, args: string[], env: NodeJS.ProcessEnv = {}) {
  return runWorkerCli(args, { cwd: project, env: { III_HOME: home, ...env } });
}

async function row(project: string, name: string): Promise<Row> {
  const list = await cli(project, ["list", "--json"]);
  return (JSON.parse(list.stdout) as Row[]).find((r) => r.name === name)!;
}

async function waitEnded(project: string, name: string, timeoutMs = 20_000): Promise<Row> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const r = await row(project, name);
    if (r.status !== "running" && r.status !== "pending") return r;
    if (Date.now() > deadline) throw new Error(`${name} still ${r.status}`);
    await sleep(50);
  }
}

/** A fresh project with the module added (extra `add` options) and started; resolves with the ended row. */
async function run(source: string | Uint8Array, addArgs: string[] = [], env: NodeJS.ProcessEnv = {}) {
  const project = join(root, `p${++n}`);
  mkdirSync(project, { recursive: true });
  const module = join(project, "guest.wasm");
  writeFileSync(module, typeof source === "string" ? await wat(source) : source);
  const added = await cli(project, ["add", module, "--name", "guest", ...addArgs]);
  expect(added.code, added.stderr).toBe(0);
  const started = await cli(project, ["start", "guest"], env);
  expect(started.code, started.stderr).toBe(0);
  const ended = await waitEnded(project, "guest");
  const listText = (await cli(project, ["list"])).stdout;
  const logs = await cli(project, ["logs", "guest"]);
  return { project, row: ended, listText, stdout: logs.stdout };
}

describe("preview 1 on node:wasi", () => {
  it("a module that exits 7 is completed (exit 7), its stdout in the worker's logs", async () => {
    const r = await run(exitWith(7, "hello from wasm\n"));
    expect(r.row).toMatchObject({ status: "completed", tier: "wasm", lastExit: { code: 7, state: "completed" } });
    expect(r.listText).toMatch(/guest\s+wasm:\S+guest\.wasm\s+completed \(exit 7\)/);
    expect(r.stdout).toBe("hello from wasm\n");
  });
});

describe("hostile modules", () => {
  it("cannot read outside its dirs (.. refused with ENOTCAPABLE)", async () => {
    const project = join(root, "outside");
    mkdirSync(join(project, "data"), { recursive: true });
    writeFileSync(join(project, "secret.txt"), "secret");
    writeFileSync(join(project, "data", "inside.txt"), "ok");
    const dir = ["--mount", `${join(project, "data")}:/data:ro`];
    expect((await run(openAt("inside.txt", 0, RIGHT_FD_READ), dir)).row.lastExit).toMatchObject({ code: 0 });
    expect((await run(openAt("../secret.txt", 0, RIGHT_FD_READ), dir)).row.lastExit).toMatchObject({ code: 76 });
  });

  it("a mount holding a symlink out of it is refused at start (node:wasi follows one in the middle of a path)", async () => {
    // the reviewer's repro: data/up -> the dir above, the module creates up/planted.txt through it
    const project = join(root, "linkout");
    mkdirSync(join(project, "data"), { recursive: true });
    symlinkSync(project, join(project, "data", "up"));
    writeFileSync(join(project, "guest.wasm"), await wat(openAt("up/planted.txt", O_CREAT, RIGHT_FD_WRITE)));
    expect((await cli(project, ["add", "./guest.wasm", "--mount", `${join(project, "data")}:/data`])).code).toBe(0);
    const started = await cli(project, ["start", "guest"]);
    expect(started.code).toBe(1);
    expect(started.stderr).toContain(`mount ${join(project, "data")} (/data): up is a symlink to ${project}, out of the mount`);
    expect(started.stderr).toMatch(/\[InvalidOption\]$/m);
    expect(existsSync(join(project, "planted.txt"))).toBe(false);
    expect(await row(project, "guest")).toMatchObject({ status: "failed", lastExit: { state: "failed", reason: expect.stringMatching(/up is a symlink/) } });
    // one that only a component-by-component resolution catches: x/l -> y/../.. with x/y -> . is x/.. /.. =
    // the mount's parent, though y/../.. read as text stays inside
    rmSync(join(project, "data", "up"));
    mkdirSync(join(project, "data", "x"), { recursive: true });
    symlinkSync(".", join(project, "data", "x", "y"));
    symlinkSync("y/../..", join(project, "data", "x", "l"));
    const again = await cli(project, ["start", "guest"]);
    expect(again.code).toBe(1);
    expect(again.stderr).toContain("x/l is a symlink to y/../.., out of the mount");
  });

  it("a mount with symlinks that stay inside it still runs, and the module reaches files through them", async () => {
    const project = join(root, "linkin");
    const data = join(project, "data");
    mkdirSync(join(data, "sub", "deep"), { recursive: true });
    writeFileSync(join(data, "sub", "x.txt"), "x");
    symlinkSync("sub", join(data, "inner")); // relative
    symlinkSync(join(data, "sub"), join(data, "abs")); // absolute, into the mount
    symlinkSync("../..", join(data, "sub", "deep", "top")); // climbs, but only to the mount's root
    symlinkSync("missing/file", join(data, "dangling")); // dangling, inside
    const dir = ["--mount", `${data}:/data:ro`];
    expect((await run(openAt("inner/x.txt", 0, RIGHT_FD_READ), dir)).row).toMatchObject({ status: "completed", lastExit: { code: 0 } });
    expect((await run(openAt("abs/x.txt", 0, RIGHT_FD_READ), dir)).row).toMatchObject({ status: "completed", lastExit: { code: 0 } });
    expect((await run(openAt("sub/deep/top/sub/x.txt", 0, RIGHT_FD_READ), dir)).row).toMatchObject({ status: "completed", lastExit: { code: 0 } });
  });

  it("the symlink check is bounded: a mount with more entries than the limit is refused, naming it", () => {
    const data = join(root, "wide");
    mkdirSync(data, { recursive: true });
    for (let i = 0; i < 20; i++) writeFileSync(join(data, `f${i}`), "");
    const dir = { hostPath: data, guestPath: "/data", readOnly: true };
    expect(() => assertNoLinksOut(dir, { maxEntries: 10, maxMs: 5_000 })).toThrow(new RegExp(`mount ${data} \\(/data\\) is too large to check for symlinks out of it \\(more than 10 entries`));
    expect(() => assertNoLinksOut(dir, { maxEntries: 100, maxMs: 5_000 })).not.toThrow();
  });

  it("cannot write into a readOnly dir (create, truncate, open for write: EROFS), and can into a writable one", async () => {
    const project = join(root, "readonly");
    mkdirSync(join(project, "ro"), { recursive: true });
    mkdirSync(join(project, "rw"), { recursive: true });
    writeFileSync(join(project, "ro", "keep.txt"), "original");
    const ro = ["--mount", `${join(project, "ro")}:/ro:ro`];
    expect((await run(openAt("new.txt", O_CREAT, RIGHT_FD_WRITE), ro)).row.lastExit).toMatchObject({ code: 69 });
    expect((await run(openAt("keep.txt", O_TRUNC, RIGHT_FD_WRITE), ro)).row.lastExit).toMatchObject({ code: 69 });
    expect((await run(openAt("keep.txt", 0, RIGHT_FD_WRITE), ro)).row.lastExit).toMatchObject({ code: 69 });
    expect(existsSync(join(project, "ro", "new.txt"))).toBe(false);
    expect(readFileSync(join(project, "ro", "keep.txt"), "utf8")).toBe("original");
    expect((await run(openAt("new.txt", O_CREAT, RIGHT_FD_WRITE), ["--mount", `${join(project, "rw")}:/rw`])).row.lastExit).toMatchObject({ code: 0 });
    expect(existsSync(join(project, "rw", "new.txt"))).toBe(true);
  });

  it("cannot grow memory past maxMemoryBytes (memory.grow returns -1), and a module needing more fails to start", async () => {
    expect((await run(growBy(100), ["--memory", "16Mi"])).row.lastExit).toMatchObject({ code: 0 }); // 101 pages fit
    expect((await run(growBy(2000), ["--memory", "16Mi"])).row.lastExit).toMatchObject({ code: 42 }); // 2001 pages do not
    const project = join(root, "bigmem");
    mkdirSync(project, { recursive: true });
    writeFileSync(join(project, "big.wasm"), await wat(growBy(0, 1000)));
    expect((await cli(project, ["add", "./big.wasm", "--memory", "16Mi"])).code).toBe(0);
    const started = await cli(project, ["start", "big"]);
    expect(started.code).toBe(1);
    expect(started.stderr).toMatch(/memory limit/);
    expect((await row(project, "big"))).toMatchObject({ status: "failed", lastExit: { state: "failed", reason: expect.stringMatching(/^memory limit/) } });
    expect((await cli(project, ["list"])).stdout).toMatch(/failed: memory limit/);
  });

  it("a module with more than one memory is refused at start (the limit holds per memory)", async () => {
    // two memories each grown to the cap would hold twice the limit
    const two = await wat(twoMemories(200), { multi_memory: true });
    expect(coreModuleMemories(two)).toEqual([{ index: 0, imported: 0, defined: 2 }]);
    expect(coreModuleMemories(await wat(importedAndDefinedMemory, { multi_memory: true }))).toEqual([{ index: 0, imported: 1, defined: 1 }]);
    const project = join(root, "twomem");
    mkdirSync(project, { recursive: true });
    writeFileSync(join(project, "two.wasm"), two);
    expect((await cli(project, ["add", "./two.wasm", "--memory", "16Mi"])).code).toBe(0);
    const started = await cli(project, ["start", "two"]);
    expect(started.code).toBe(1);
    expect(started.stderr).toMatch(/the module has 2 memories \(2 defined, 0 imported\); at most 1 is allowed.*\[WasmInvalid\]/);
    expect((await row(project, "two")).lastExit).toBeNull(); // it never ran
  });

  it("a WasmGC module cannot hold more than the limit in the V8 heap: past it the run ends failed: memory limit", async () => {
    // 16 arrays of 1 MiB fit under the heap floor (64 MiB): GC modules run
    expect((await run(gcHoarder(16, 1 << 20), ["--memory", "16Mi"])).row).toMatchObject({ status: "completed", lastExit: { code: 0 } });
    // 1 GiB of arrays kept in a table, with a 16 MiB limit: ended at 16 + 64 (heap) + 16 + 192 (runtime) = 288 MiB
    // (undefended, the run completes at 1.1 GB RSS)
    const r = await run(gcHoarder(1024, 1 << 20), ["--memory", "16Mi"]);
    expect(r.row).toMatchObject({ status: "failed", lastExit: { state: "failed", code: null, reason: expect.stringMatching(/^memory limit: the runner's resident memory reached \d+ MiB \(at most 288 MiB/) } });
    expect(r.listText).toMatch(/failed: memory limit/);
    expect(r.row.lastExit!.maxRssKb!).toBeLessThan(360 * 1024);
  });

  it("a thread that ignores terminate() (large GC allocations in a loop) still ends at its timeout: the runner ends with it", async () => {
    const t0 = Date.now();
    const r = await run(gcHoarder(0x7fffffff, 1 << 20, false), ["--max-execution-ms", "300"]);
    expect(r.row).toMatchObject({ status: "failed", pid: null, lastExit: { state: "failed", code: null, reason: "timeout" } });
    expect(r.row.lastExit!.durationMs!).toBeLessThan(4_000); // 300 ms + the 2 s grace
    expect(Date.now() - t0).toBeLessThan(30_000);
  });

  it("spinning forever is ended at maxExecutionMs (failed, timeout) and at the CPU budget (failed, cpu budget)", async () => {
    const t0 = Date.now();
    const timed = await run(spin, ["--max-execution-ms", "300"]);
    expect(timed.row).toMatchObject({ status: "failed", lastExit: { state: "failed", code: null, reason: "timeout" } });
    expect(timed.row.lastExit!.durationMs!).toBeLessThan(3_000);
    const budget = await run(spin, ["--cpu-budget-ms", "200"]);
    expect(budget.row).toMatchObject({ status: "failed", lastExit: { reason: "cpu budget" } });
    expect(timed.listText).toMatch(/failed: timeout/);
    // each end is measured by durationMs above; this only catches a run that was never ended (loaded CI hosts are slow)
    expect(Date.now() - t0).toBeLessThan(60_000);
  });

  it("cannot make a symlink that climbs (a -> ., then l -> a/a/../..): the kernel would resolve it to the mount's grandparent", async () => {
    // review s16: uvwasi checks a new link's target as text ("a/a/../.." normalises to "."), the kernel resolves
    // a -> . first, so l was the mount's grandparent and the module created files anywhere on the host
    const project = join(root, "makelink");
    const data = join(project, "mnt", "data");
    mkdirSync(data, { recursive: true });
    const dir = ["--mount", `${data}:/data`];
    const r = await run(linkGamesThenCreate([[".", "a"], ["a/a/../..", "l"]], [], "l/planted-by-link.txt"), dir);
    expect(existsSync(join(project, "planted-by-link.txt"))).toBe(false);
    expect(r.row.lastExit!.code).not.toBe(0);
    expect(existsSync(join(data, "l"))).toBe(false); // path_symlink refused (ENOTCAPABLE)
    // a link to . is harmless (it resolves below itself), and `..` after it in a path is taken as text by uvwasi
    writeFileSync(join(project, "mnt", "above.txt"), "above");
    expect((await run(openAt("a/../above.txt", 0, RIGHT_FD_READ), dir)).row.lastExit!.code).not.toBe(0);
  });

  it("a writable mount holding a symlink that climbs with .. is refused at start, even one that stays inside (the module would move it up)", async () => {
    // d/up -> .. is the mount itself, but renamed to the top it is the mount's parent: up/planted.txt
    const project = join(root, "moveup");
    const data = join(project, "data");
    mkdirSync(join(data, "d"), { recursive: true });
    symlinkSync("..", join(data, "d", "up"));
    writeFileSync(join(project, "guest.wasm"), await wat(linkGamesThenCreate([], [["d/up", "up"]], "up/planted-by-rename.txt")));
    expect((await cli(project, ["add", "./guest.wasm", "--mount", `${data}:/data`])).code).toBe(0);
    const started = await cli(project, ["start", "guest"]);
    await waitEnded(project, "guest");
    expect(existsSync(join(project, "planted-by-rename.txt"))).toBe(false);
    expect(started.code).toBe(1);
    expect(started.stderr).toContain(`mount ${data} (/data): d/up is a symlink to .., which climbs with ..`);
    expect(started.stderr).toMatch(/\[InvalidOption\]$/m);
    // an absolute target with `..` that resolves inside at start ($data/x): the module makes `sub -> .`, and abs is
    // then $data/.. /x, the mount's sibling
    rmSync(join(data, "d", "up"));
    mkdirSync(join(project, "x"));
    symlinkSync(`${data}/sub/../x`, join(data, "abs"));
    writeFileSync(join(project, "guest2.wasm"), await wat(linkGamesThenCreate([[".", "sub"]], [], "abs/planted-by-abs.txt")));
    expect((await cli(project, ["add", "./guest2.wasm", "--name", "guest2", "--mount", `${data}:/data`])).code).toBe(0);
    const again = await cli(project, ["start", "guest2"]);
    await waitEnded(project, "guest2");
    expect(existsSync(join(project, "x", "planted-by-abs.txt"))).toBe(false);
    expect(again.stderr).toContain(`abs is a symlink to ${data}/sub/../x, which climbs with ..`);
    expect(again.code).toBe(1);
  });

  it("a read-only mount holding a writable one is held to the writable rule: the module could rearrange a dir its links go through", async () => {
    // data/l -> a/b/../../x is data/x at start; with data/a also mounted writable, the module replaces a/b by
    // `b -> .` and l becomes data/.. /x, read through the read-only mount
    const project = join(root, "nested");
    const data = join(project, "data");
    mkdirSync(join(data, "a", "b"), { recursive: true });
    mkdirSync(join(project, "x"));
    writeFileSync(join(project, "x", "secret.txt"), "outside");
    symlinkSync("a/b/../../x", join(data, "l"));
    const source = `(module
 (import "wasi_snapshot_preview1" "path_remove_directory" (func $rmdir (param i32 i32 i32) (result i32)))
 (import "wasi_snapshot_preview1" "path_symlink" (func $symlink (param i32 i32 i32 i32 i32) (result i32)))
 (import "wasi_snapshot_preview1" "path_open" (func $open (param i32 i32 i32 i32 i32 i64 i64 i32 i32) (result i32)))
 (import "wasi_snapshot_preview1" "proc_exit" (func $exit (param i32)))
 (memory (export "memory") 1)
 (data (i32.const 100) "b")
 (data (i32.const 110) ".")
 (data (i32.const 120) "l/secret.txt")
 (func (export "_start") (local $rc i32)
  (drop (call $rmdir (i32.const 4) (i32.const 100) (i32.const 1)))
  (drop (call $symlink (i32.const 110) (i32.const 1) (i32.const 4) (i32.const 100) (i32.const 1)))
  (local.set $rc (call $open (i32.const 3) (i32.const 0) (i32.const 120) (i32.const 12) (i32.const 0) (i64.const 2) (i64.const 2) (i32.const 0) (i32.const 32)))
  (call $exit (i32.add (i32.const 100) (local.get $rc)))))`;
    const r = await (async () => {
      writeFileSync(join(project, "guest.wasm"), await wat(source));
      expect((await cli(project, ["add", "./guest.wasm", "--name", "guest", "--mount", `${data}:/ro:ro`, "--mount", `${data}/a:/rw`])).code).toBe(0);
      const started = await cli(project, ["start", "guest"]);
      return { started, row: await waitEnded(project, "guest") };
    })();
    expect(r.row.lastExit?.code).not.toBe(100); // 100 + 0: it opened x/secret.txt beside the mount
    expect(r.started.stderr).toContain(`mount ${data} (/ro): l is a symlink to a/b/../../x, which climbs with ..`);
    expect(r.started.code).toBe(1);
  });

  it("fd_renumber of a read-only dir onto itself keeps it read-only", async () => {
    // review s16: the guard added `to` then deleted `from`, the same fd, and the mount took writes
    const project = join(root, "renumber-ro");
    mkdirSync(join(project, "ro"), { recursive: true });
    const r = await run(renumberSelfThenCreate("written.txt"), ["--mount", `${join(project, "ro")}:/ro:ro`]);
    expect(existsSync(join(project, "ro", "written.txt"))).toBe(false);
    expect(r.row.lastExit).toMatchObject({ code: 100 + 69 });
  });

  it("the stdout cap holds against fd_pwrite, aliased iovecs, resizing and fd_renumber(1, 0)", async () => {
    const cap = 64 * 1024;
    const r = await run(stdioCapBypass(64), [], { III_WASM_STDIO_CAP_BYTES: String(cap) }); // 4 + 64 + 4 MiB offered, 1 GiB resize
    expect(r.row).toMatchObject({ status: "completed", lastExit: { code: 0 } });
    const log = join(home, "managed");
    const sizes = readdirSync(log, { recursive: true, withFileTypes: true })
      .filter((e) => e.isFile() && e.name === "stdout.log" && e.parentPath.startsWith(join(log)) && readFileSync(join(e.parentPath, "..", "wasm-launch.json"), "utf8").includes(r.project))
      .map((e) => statSync(join(e.parentPath, e.name)).size);
    expect(sizes).toHaveLength(1);
    expect(sizes[0]).toBeLessThanOrEqual(cap + 100);
    expect(r.stdout).toMatch(/\[iii: stdout truncated after 65536 bytes\]/);
  });

  it("the limits hold while the module is instantiated: a start function that spins is ended at maxExecutionMs and at the CPU budget", async () => {
    // review s16: the limits were armed when the guest reported "started", after instantiation, so a (start)
    // function spun until the CLI gave up on the start (120 s) under a 300 ms limit
    const t0 = Date.now();
    const cases: [string, string, string][] = [
      ["--max-execution-ms", "300", "timeout"],
      ["--cpu-budget-ms", "200", "cpu budget"],
    ];
    for (const [option, value, reason] of cases) {
      const project = join(root, `startspin-${reason.replace(" ", "-")}`);
      mkdirSync(project, { recursive: true });
      writeFileSync(join(project, "guest.wasm"), await wat(spinInStartFunction));
      expect((await cli(project, ["add", "./guest.wasm", "--name", "guest", option, value])).code).toBe(0);
      const started = await cli(project, ["start", "guest", "--boot-timeout", "20"]);
      expect(started.stderr).toContain(reason);
      const ended = await waitEnded(project, "guest");
      expect(ended).toMatchObject({ status: "failed", lastExit: { state: "failed", reason } });
      expect(ended.lastExit!.durationMs!).toBeLessThan(3_000);
    }
    expect(Date.now() - t0).toBeLessThan(60_000);
  });

  it("a mount over III_HOME is refused (the guest would rewrite iii's state and code cache), as is a writable one holding iii's code", async () => {
    // review s16: with --mount over the parent of III_HOME a component rewrote its cached component.js and the next
    // start ran that JavaScript in the runner; here a module plants a file in III_HOME through such a mount
    const project = join(root, "overhome");
    const state = join(project, "state");
    const ownHome = join(state, ".iii");
    mkdirSync(ownHome, { recursive: true });
    writeFileSync(join(project, "guest.wasm"), await wat(linkGamesThenCreate([], [], ".iii/planted-in-home.txt")));
    const env = { III_HOME: ownHome };
    const c = (args: string[]) => runWorkerCli(args, { cwd: project, env });
    for (const mount of [`${state}:/state`, `${state}:/state:ro`, `${ownHome}/x:/x`]) {
      mkdirSync(join(ownHome, "x"), { recursive: true });
      expect((await c(["add", "./guest.wasm", "--name", "g", "--mount", mount])).code).toBe(0);
      const started = await c(["start", "g"]);
      await sleep(300);
      expect(existsSync(join(ownHome, "planted-in-home.txt"))).toBe(false);
      expect(started.stderr).toMatch(/overlaps III_HOME .*\[InvalidOption\]$/m);
      expect(started.code).toBe(1);
      expect((await c(["remove", "g", "--force"])).code).toBe(0);
    }
    // the package that holds the runner's code, writable: refused; read-only: runs
    const pkg = join(import.meta.dirname, "..", "..");
    expect((await c(["add", "./guest.wasm", "--name", "g", "--mount", `${pkg}:/pkg`])).code).toBe(0);
    const code = await c(["start", "g"]);
    expect(code.stderr).toMatch(/writable: it holds .*, code iii runs on the host/);
    expect(code.code).toBe(1);
  });

  it("a writable mount holding another worker's module is refused: the guest would replace it and run as that worker", async () => {
    const project = join(root, "lateral");
    const mods = join(project, "mods");
    mkdirSync(mods, { recursive: true });
    const victim = await wat(exitWith(0, "the trusted worker\n"));
    writeFileSync(join(mods, "trusted.wasm"), victim);
    writeFileSync(join(project, "plugin.wasm"), await wat(linkGamesThenCreate([], [], "trusted.wasm")));
    expect((await cli(project, ["add", "./mods/trusted.wasm", "--name", "trusted", "--mount", `${project}/mods:/m:ro`])).code).toBe(0);
    expect((await cli(project, ["add", "./plugin.wasm", "--name", "plugin", "--mount", `${mods}:/mods`])).code).toBe(0);
    const started = await cli(project, ["start", "plugin"]);
    await waitEnded(project, "plugin");
    expect(Buffer.compare(readFileSync(join(mods, "trusted.wasm")), victim)).toBe(0);
    expect(started.stderr).toContain(`holds ${join(mods, "trusted.wasm")}, another worker's module`);
    expect(started.code).toBe(1);
  });

  it("the runner does not carry the CLI's whole environment: a secret of the user's stays out of the process that hosts the guest", async () => {
    const project = join(root, "envleak");
    mkdirSync(project, { recursive: true });
    writeFileSync(join(project, "guest.wasm"), await wat(spin));
    const env = { AWS_SECRET_ACCESS_KEY: "s16-host-secret", III_SOMETHING: "kept" };
    expect((await cli(project, ["add", "./guest.wasm", "--name", "guest", "--max-execution-ms", "20000"])).code).toBe(0);
    expect((await cli(project, ["start", "guest"], env)).code).toBe(0);
    const { pid } = await row(project, "guest");
    const environ = readFileSync(`/proc/${pid}/environ`, "utf8").split("\0");
    await cli(project, ["stop", "guest"]);
    expect(environ).toContain("III_WORKER_NAME=guest");
    expect(environ).toContain("III_SOMETHING=kept");
    expect(environ.filter((e) => e.startsWith("AWS_SECRET_ACCESS_KEY="))).toEqual([]);
  });

  it("a stdout flood is cut at the cap: the log stays bounded and the runner's memory flat", async () => {
    const cap = 1024 * 1024;
    const r = await run(flood(2048), [], { III_WASM_STDIO_CAP_BYTES: String(cap) }); // 128 MiB offered
    expect(r.row).toMatchObject({ status: "completed", lastExit: { code: 0 } });
    expect(r.stdout.length).toBeLessThanOrEqual(cap + 65_536 + 100);
    expect(r.stdout).toMatch(/\[iii: stdout truncated after \d+ bytes\]/);
    expect(r.row.lastExit!.maxRssKb!).toBeLessThan(250_000);
  });
});

describe("lifecycle", () => {
  it("start → running, stop → stopped, exec refused, remove deletes it", async () => {
    const project = join(root, "life");
    mkdirSync(project, { recursive: true });
    writeFileSync(join(project, "spin.wasm"), await wat(spin));
    expect((await cli(project, ["add", "wasm:spin.wasm"])).code).toBe(0);
    expect((await cli(project, ["start", "spin"])).code).toBe(0);
    const running = await row(project, "spin");
    expect(running).toMatchObject({ status: "running", tier: "wasm" });
    expect(statSync(`/proc/${running.pid}`).isDirectory()).toBe(true);
    const again = await cli(project, ["start", "spin"]);
    expect(again.stderr).toMatch(/already running/);
    const exec = await cli(project, ["exec", "spin", "--", "ls"]);
    expect(exec.code).toBe(1);
    expect(exec.stderr).toMatch(/exec does not apply to WASM worker "spin"/);
    expect((await cli(project, ["remove", "spin"])).stderr).toMatch(/is running/);
    const stop = await cli(project, ["stop", "spin", "--timeout", "2"]);
    expect(stop.stderr).toMatch(/stopped spin/);
    expect(await row(project, "spin")).toMatchObject({ status: "stopped", lastExit: { reason: "stopped" } });
    const gone = () => !existsSync(`/proc/${running.pid}`) || /^\d+ \(.*\) [ZX]/.test(readFileSync(`/proc/${running.pid}/stat`, "utf8"));
    expect(gone()).toBe(true);
    expect((await cli(project, ["remove", "spin"])).code).toBe(0);
    expect((await cli(project, ["list", "--json"])).stdout.trim()).toBe("[]");
  });

  it("add refuses a file that is not WebAssembly, and VM-only options", async () => {
    const project = join(root, "addbad");
    mkdirSync(project, { recursive: true });
    writeFileSync(join(project, "fake.wasm"), "#!/bin/sh\n");
    const bad = await cli(project, ["add", "./fake.wasm"]);
    expect(bad.code).toBe(1);
    expect(bad.stderr).toMatch(/is not a WebAssembly binary/);
    writeFileSync(join(project, "ok.wasm"), await wat(exitWith(0, "x")));
    expect((await cli(project, ["add", "./ok.wasm", "-p", "8080:80"])).stderr).toMatch(/do not apply to a WASM worker/);
    // A WASM worker has no writable root layer to bound: its files are the -m dirs it is given.
    expect((await cli(project, ["add", "./ok.wasm", "--disk", "1Gi"])).stderr).toMatch(/--disk.*do not apply to a WASM worker/);
  });
});

describe("a WASI_CONFIG the runner does not understand", () => {
  it("fails the run at start with one line naming the field; list shows it; no restart", async () => {
    const project = join(root, "badconfig");
    mkdirSync(project, { recursive: true });
    writeFileSync(join(project, "ok.wasm"), await wat(exitWith(0, "ran\n")));
    expect((await cli(project, ["add", "./ok.wasm"])).code).toBe(0);
    expect((await cli(project, ["start", "ok"])).code).toBe(0);
    await waitEnded(project, "ok");
    // The controller always writes a valid document; hand the runner one with a dropped false boolean.
    const dir = join(home, "managed", readdirSync(join(home, "managed")).find((k) => existsSync(join(home, "managed", k, "ok", "wasi-config.json")))!, "ok");
    const config = JSON.parse(readFileSync(join(dir, "wasi-config.json"), "utf8"));
    delete config.network.inherit;
    writeFileSync(join(dir, "wasi-config.json"), JSON.stringify(config));
    const runner = await cli(project, ["__wasm-run", join(dir, "wasi-config.json")]);
    expect(runner.code).toBe(0);
    expect(await row(project, "ok")).toMatchObject({ status: "failed", lastExit: { state: "failed", code: null, reason: "invalid WASI_CONFIG: network.inherit: missing field" } });
    expect((await cli(project, ["list"])).stdout).toMatch(/failed: invalid WASI_CONFIG: network\.inherit: missing field/);
    expect((await cli(project, ["logs", "ok"])).stdout).toBe("ran\n"); // the guest did not run again
  });
});
