// The single executable as PID 1 in a chroot holding only busybox, /init.krun
// and /.iii/ (no glibc of its own): proves the runtime tree is self-contained.
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import { execFileSync, spawnSync } from "node:child_process";
import { closeSync, existsSync, openSync, readdirSync, readSync, statSync } from "node:fs";
import { join } from "node:path";
import { PACKAGE_DIR, SEA_BINARY, SEA_RUNTIME, canRunNamespaces, collect, makeRootfs, startInit, sweepWorkerCgroups, type InitRun } from "./harness.js";

/** Whether an ELF64 file has a PT_INTERP program header (is dynamically linked). */
function hasInterpreter(path: string): boolean {
  const fd = openSync(path, "r");
  try {
    const head = Buffer.alloc(64);
    readSync(fd, head, 0, 64, 0);
    const phoff = Number(head.readBigUInt64LE(32));
    const phentsize = head.readUInt16LE(54);
    const phnum = head.readUInt16LE(56);
    const table = Buffer.alloc(phentsize * phnum);
    readSync(fd, table, 0, table.length, phoff);
    for (let i = 0; i < phnum; i++) if (table.readUInt32LE(i * phentsize) === 3) return true;
    return false;
  } finally {
    closeSync(fd);
  }
}

function newestSource(dir: string): number {
  let newest = 0;
  for (const entry of readdirSync(dir, { withFileTypes: true })) {
    const path = join(dir, entry.name);
    newest = Math.max(newest, entry.isDirectory() ? newestSource(path) : statSync(path).mtimeMs);
  }
  return newest;
}

function ensureSea(): string | null {
  const missingTool = ["patchelf", "ldd"].find((t) => spawnSync("sh", ["-c", `command -v ${t}`]).status !== 0);
  const fresh = existsSync(SEA_BINARY) && existsSync(SEA_RUNTIME) && statSync(SEA_BINARY).mtimeMs > newestSource(join(PACKAGE_DIR, "src"));
  if (fresh) return null;
  if (missingTool) return `cannot build the SEA: ${missingTool} not installed`;
  try {
    execFileSync(process.execPath, [join(PACKAGE_DIR, "scripts/build-sea.mjs")], { stdio: "pipe", timeout: 180_000 });
    return null;
  } catch (err) {
    return `SEA build failed: ${(err as Error).message.split("\n")[0]}`;
  }
}

let skipReason: string | null = canRunNamespaces();
beforeAll(() => {
  skipReason ??= ensureSea();
  if (skipReason) console.log(`[init SEA test] skipped: ${skipReason}`);
}, 200_000);

const startedAt = Date.now() - 1000;
afterAll(() => sweepWorkerCgroups(startedAt));
const runs: InitRun[] = [];
afterEach(() => {
  for (const run of runs.splice(0)) {
    if (run.proc.exitCode === null) run.proc.kill("SIGKILL");
    run.rootfs.cleanup();
  }
});

describe("dist/init.krun (single executable)", () => {
  it("runs as PID 1 in a busybox-only chroot: READY, workload, tty exec, exit status", async (ctx) => {
    if (skipReason) ctx.skip();
    const rootfs = makeRootfs("sea");
    // Nothing but busybox, the init and its runtime: no glibc, no loader outside /.iii.
    expect(readdirSync(rootfs.root).sort()).toEqual([".iii", "app", "bin", "data", "dev", "etc", "home", "init.krun", "proc", "root", "run", "sys", "tmp"]);
    expect(existsSync(join(rootfs.root, "lib"))).toBe(false);
    expect(existsSync(join(rootfs.root, "usr"))).toBe(false);
    expect(hasInterpreter(join(rootfs.root, "bin/busybox"))).toBe(false); // static
    expect(hasInterpreter(join(rootfs.root, "init.krun"))).toBe(true); // dynamic, loader in /.iii

    const t0 = performance.now();
    const run = await startInit({
      env: { III_WORKER_CMD: JSON.stringify(["/bin/sh", "-c", "echo workload-up; read x < /dev/zero; sleep 1000"]), III_WORKER_USER: "app", III_WORKER_WORKDIR: "/app" },
      control: true,
      mode: "sea",
      rootfs,
    });
    runs.push(run);
    const host = run.host!;
    const ready = await host.ready;
    const readyMs = performance.now() - t0;
    console.log(`[init SEA test] spawn → READY ${readyMs.toFixed(0)} ms (init's own bootMs ${ready.bootMs} ms)`);
    expect(ready.protocol).toBe(1);

    const e = host.exec({ argv: ["sh", "-c", "echo $(id -u):$(pwd); cat /proc/1/cmdline | tr '\\0' ' '"] });
    e.stdin.end();
    const [out, status] = await Promise.all([collect(e.stdout), e.exit]);
    expect(status.code).toBe(0);
    expect(out.toString()).toBe("1000:/app\n/init.krun ");

    // tty execs re-execute /init.krun in its helper mode.
    const tty = host.exec({ argv: ["sh", "-c", "stty size; tty"], tty: true, rows: 30, cols: 90 });
    const [ttyOut, ttyStatus] = await Promise.all([collect(tty.stdout), tty.exit]);
    expect(ttyStatus.code).toBe(0);
    expect(ttyOut.toString()).toContain("30 90");
    expect(ttyOut.toString()).toMatch(/\/dev\/pts\/\d+/);

    host.shutdown(1000);
    const exit = await host.workloadExit;
    expect(exit).toMatchObject({ code: 143, signal: "SIGTERM", requested: true, escalated: false });
    expect((await run.result).code).toBe(143);
  });
});
