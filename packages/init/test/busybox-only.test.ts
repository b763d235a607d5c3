// dist/init.krun as PID 1 in a chroot holding only busybox-static and /init.krun: no libc, no loader, no
// /.iii runtime. Proves the init is self-contained (what a distroless or musl image gives it).
import { afterAll, afterEach, describe, expect, it } from "vitest";
import { closeSync, existsSync, openSync, readdirSync, readFileSync, readSync, statSync } from "node:fs";
import { execFileSync } from "node:child_process";
import { join } from "node:path";
import { INIT_BINARY, PACKAGE_DIR, canRunNamespaces, collect, descendants, makeRootfs, startInit, sweepWorkerCgroups, type InitRun } from "./harness.js";

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

const skipReason = canRunNamespaces();
if (skipReason) console.log(`[init busybox-only test] skipped: ${skipReason}`);

const startedAt = Date.now() - 1000;
afterAll(() => sweepWorkerCgroups(startedAt));
const runs: InitRun[] = [];
afterEach(() => {
  for (const run of runs.splice(0)) {
    if (run.proc.exitCode === null) run.proc.kill("SIGKILL");
    run.rootfs.cleanup();
  }
});

describe.skipIf(skipReason !== null)("dist/init.krun (one static executable)", () => {
  it("is a statically linked x86-64 ELF of at most 5 MB", () => {
    expect(execFileSync("file", ["-b", INIT_BINARY], { encoding: "utf8" })).toMatch(/ELF 64-bit LSB executable, x86-64.*statically linked/);
    expect(hasInterpreter(INIT_BINARY)).toBe(false);
    expect(statSync(INIT_BINARY).size).toBeLessThanOrEqual(5 * 1024 * 1024);
  });

  it("answers --version and --help outside PID 1 without booting anything", () => {
    const version = (JSON.parse(readFileSync(join(PACKAGE_DIR, "package.json"), "utf8")) as { version: string }).version;
    expect(execFileSync(INIT_BINARY, ["--version"], { encoding: "utf8", env: {} })).toBe(`iii-init ${version} (static, QuickJS)\n`);
    const help = execFileSync(INIT_BINARY, ["--help"], { encoding: "utf8", env: {} });
    expect(help).toMatch(/^usage: init\.krun .*as PID 1 of an iii worker VM/);
    expect(help).toContain("init.krun --version");
  });

  it("runs as PID 1 in a busybox-only chroot: READY, workload, exec, tty exec, VmRSS ≤ 5 MB, exit status", async () => {
    const rootfs = makeRootfs();
    // Nothing but busybox and the init: no glibc, no loader, no /.iii runtime.
    expect(readdirSync(rootfs.root).sort()).toEqual(["app", "bin", "data", "dev", "etc", "home", "init.krun", "proc", "root", "run", "sys", "tmp"]);
    expect(existsSync(join(rootfs.root, "lib"))).toBe(false);
    expect(existsSync(join(rootfs.root, "usr"))).toBe(false);
    expect(hasInterpreter(join(rootfs.root, "bin/busybox"))).toBe(false); // static
    expect(hasInterpreter(join(rootfs.root, "init.krun"))).toBe(false); // static

    const t0 = performance.now();
    const run = await startInit({
      env: { III_WORKER_CMD: JSON.stringify(["/bin/sh", "-c", "echo workload-up; read x < /dev/zero; sleep 1000"]), III_WORKER_USER: "app", III_WORKER_WORKDIR: "/app" },
      control: true,
      rootfs,
    });
    runs.push(run);
    const host = run.host!;
    const ready = await host.ready;
    const readyMs = performance.now() - t0;
    expect(ready.protocol).toBe(1);

    const e = host.exec({ argv: ["sh", "-c", "echo $(id -u):$(pwd); cat /proc/1/cmdline | tr '\\0' ' '"] });
    e.stdin.end();
    const [out, status] = await Promise.all([collect(e.stdout), e.exit]);
    expect(status.code).toBe(0);
    expect(out.toString()).toBe("1000:/app\n/init.krun ");

    const tty = host.exec({ argv: ["sh", "-c", "stty size; tty"], tty: true, rows: 30, cols: 90 });
    const [ttyOut, ttyStatus] = await Promise.all([collect(tty.stdout), tty.exit]);
    expect(ttyStatus.code).toBe(0);
    expect(ttyOut.toString()).toContain("30 90");
    expect(ttyOut.toString()).toMatch(/\/dev\/pts\/\d+/);

    // Init's resident memory once it serves: the host sees the same /proc/<pid>/status the guest's /proc/1 is.
    const initPid = descendants(run.proc.pid!).find((p) => readFileSync(`/proc/${p}/cmdline`, "utf8") === "/init.krun\0");
    expect(initPid).toBeDefined();
    const rssKiB = Number(/^VmRSS:\s+(\d+) kB$/m.exec(readFileSync(`/proc/${initPid}/status`, "utf8"))?.[1]);
    console.log(`[init busybox-only test] spawn → READY ${readyMs.toFixed(0)} ms (init's own bootMs ${ready.bootMs} ms); init VmRSS ${rssKiB} kB`);
    expect(rssKiB).toBeGreaterThan(0);
    expect(rssKiB).toBeLessThanOrEqual(5 * 1024);

    host.shutdown(1000);
    const exit = await host.workloadExit;
    expect(exit).toMatchObject({ code: 143, signal: "SIGTERM", requested: true, escalated: false });
    expect((await run.result).code).toBe(143);
  });
});
