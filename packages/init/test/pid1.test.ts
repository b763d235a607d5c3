// Acceptance tests: init as PID 1 in a PID + mount namespace with a scratch
// busybox rootfs (see harness.ts). Steps that need a VM are skipped by init
// itself with a printed reason (III_INIT_SKIP) and asserted as such.
import { afterAll, afterEach, describe, expect, it } from "vitest";
import { existsSync } from "node:fs";
import { randomBytes, createHash } from "node:crypto";
import { chmodSync, lstatSync, mkdirSync, readdirSync, readFileSync, symlinkSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { canRunNamespaces, collect, makeRootfs, runInit, startInit, sweepWorkerCgroups, type InitRun, type Rootfs } from "./harness.js";
import { encodeEnvFile, encodeKernelCmdlineEnv } from "../src/index.js";
import { ExitCode } from "../src/errors.js";

const skipReason = canRunNamespaces();
if (skipReason) console.log(`[init pid1 tests] skipped: ${skipReason}`);

const startedAt = Date.now() - 1000;
afterAll(() => sweepWorkerCgroups(startedAt));
const cleanups: Array<() => void> = [];
afterEach(() => {
  for (const c of cleanups.splice(0)) c();
});
function track<T extends { rootfs: Rootfs }>(run: T): T {
  cleanups.push(() => run.rootfs.cleanup());
  return run;
}
function trackRun(run: InitRun): InitRun {
  cleanups.push(() => {
    if (run.proc.exitCode === null) run.proc.kill("SIGKILL");
    run.rootfs.cleanup();
  });
  return run;
}

/** CAP_SYS_RESOURCE (bit 24) in our effective set: without it (some CI sandboxes) init cannot lower its oom_score_adj. */
const HAS_SYS_RESOURCE = ((BigInt(`0x${/^CapEff:\s*([0-9a-f]+)$/m.exec(readFileSync("/proc/self/status", "utf8"))?.[1] ?? "0"}`) >> 24n) & 1n) === 1n;
if (!HAS_SYS_RESOURCE) console.log("[init pid1 tests] no CAP_SYS_RESOURCE here: init warns that oom_score_adj -1000 is refused (EACCES); that line is expected");
/** init's stderr without the one warning this host's missing CAP_SYS_RESOURCE causes (kept where the capability exists). */
function stderrOf(r: { stderr: string }): string {
  return HAS_SYS_RESOURCE ? r.stderr : r.stderr.replace(/^iii-init: warning: oom: oom_score_adj -1000: EACCES\n/m, "");
}

const cmd = (script: string): string => JSON.stringify(["/bin/sh", "-c", script]);

function withResolvSymlink(): Rootfs {
  const rootfs = makeRootfs();
  symlinkSync("../run/systemd/resolve/stub-resolv.conf", join(rootfs.root, "etc/resolv.conf"));
  return rootfs;
}

async function waitFor(cond: () => boolean, timeoutMs = 10_000): Promise<void> {
  const deadline = performance.now() + timeoutMs;
  while (!cond()) {
    if (performance.now() > deadline) throw new Error("condition not met in time");
    await new Promise((r) => setTimeout(r, 20));
  }
}

/** Host pid of the first child of `pid` (init, forked by unshare). */
function childPid(pid: number): number | undefined {
  for (const task of readdirSync(`/proc/${pid}/task`)) {
    const c = readFileSync(`/proc/${pid}/task/${task}/children`, "utf8").trim();
    if (c) return Number(c.split(" ")[0]);
  }
  return undefined;
}

describe.skipIf(skipReason !== null)("init as PID 1 (namespace)", () => {
  it("gives the workload its mounts, workdir, user, HOME/PATH and no III_INIT_* variables", async () => {
    const script = [
      'echo "pid=$$"',
      'echo "uid=$(id -u) gid=$(id -g) cwd=$(pwd)"',
      "echo HOME=$HOME",
      "echo PATH=$PATH",
      "echo FOO=$FOO",
      "env | grep '^III_' | sort | sed 's/^/env:/'",
      "awk '{print \"mnt:\" $2 \":\" $3}' /proc/self/mounts",
      "echo data > /tmp/t && cat /tmp/t | sed 's/^/tmp:/'",
      "echo data > /run/r && cat /run/r | sed 's/^/run:/'",
      "test -c /dev/null && echo devnull:ok",
      "ls /sys/kernel >/dev/null && echo sys:ok",
    ].join("; ");
    const r = track(
      await runInit({
        env: {
          III_WORKER_CMD: cmd(script),
          III_WORKER_USER: "app",
          III_WORKER_WORKDIR: "/app",
          III_INIT_NOFILE: "4096",
          III_INIT_HOSTNAME: "worker-one",
          III_INIT_NO_REBOOT: "1",
          III_URL: "ws://host.iii.internal:49134",
          FOO: "bar",
        },
      }),
    );
    expect(r.code, r.stderr).toBe(0);
    const out = r.stdout;
    expect(out).toContain("pid=");
    expect(out).not.toContain("pid=1\n");
    expect(out).toContain("uid=1000 gid=1000 cwd=/app");
    expect(out).toContain("HOME=/home/app");
    expect(out).toContain("PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin");
    expect(out).toContain("FOO=bar");
    // User variables that merely start with III_ pass; the contract does not.
    expect(out.split("\n").filter((l) => l.startsWith("env:"))).toEqual(["env:III_URL=ws://host.iii.internal:49134"]);
    for (const m of ["/proc:proc", "/sys:sysfs", "/dev:devtmpfs", "/dev/pts:devpts", "/dev/shm:tmpfs", "/tmp:tmpfs", "/run:tmpfs"]) {
      expect(out).toContain(`mnt:${m}`);
    }
    expect(out).toContain("tmp:data");
    expect(out).toContain("run:data");
    expect(out).toContain("devnull:ok");
    expect(out).toContain("sys:ok");
    expect(r.stderr).toContain("workload exited with code 0");
  });

  it("without a control port runs the workload with its output on init's stdout/stderr", async () => {
    const r = track(await runInit({ env: { III_WORKER_CMD: cmd("echo to-stdout; echo to-stderr >&2; exit 4"), III_INIT_NOFILE: "1024" }, autodetectControl: true }));
    expect(r.code).toBe(4);
    expect(r.stdout).toBe("to-stdout\n");
    expect(stderrOf(r)).toBe(
      "iii-init: control: skipped (no iii.control port; workload output goes to the console)\nto-stderr\n" +
        "iii-init: workload exited with code 4; status 4\n",
    );
  });

  it("keeps in the workload's and an exec's bounding set the capabilities III_WORKER_CAPS names, Docker's default set without it", async () => {
    // What init itself may keep: its own bounding set (the host's, in this namespace).
    const ownBnd = BigInt(`0x${/^CapBnd:\s*([0-9a-f]+)$/m.exec(readFileSync("/proc/self/status", "utf8"))?.[1] ?? "0"}`);
    const capBnd = (text: string): bigint => BigInt(`0x${/CapBnd:\s*([0-9a-f]+)/.exec(text)?.[1] ?? "x"}`);
    const script = "grep CapBnd /proc/self/status > /capbnd.txt; sleep 1000";
    for (const [caps, mask] of [[undefined, 0xa80425fbn], ["CHOWN,SYS_TIME", (1n << 0n) | (1n << 25n)], ["none", 0n]] as const) {
      const run = trackRun(await startInit({ env: { III_WORKER_CMD: cmd(script), ...(caps ? { III_WORKER_CAPS: caps } : {}) }, control: true, timeoutMs: 60_000 }));
      const host = run.host!;
      await host.ready;
      const e = host.exec({ argv: ["sh", "-c", "grep CapBnd /proc/self/status"] });
      e.stdin.end();
      const [out, status] = await Promise.all([collect(e.stdout), e.exit]);
      expect(status.code).toBe(0);
      const want = (mask & ownBnd).toString(16);
      expect(capBnd(out.toString()).toString(16), `exec, III_WORKER_CAPS=${caps}`).toBe(want);
      const file = join(run.rootfs.root, "capbnd.txt");
      await waitFor(() => existsSync(file) && readFileSync(file, "utf8").includes("\n"));
      expect(capBnd(readFileSync(file, "utf8")).toString(16), `workload, III_WORKER_CAPS=${caps}`).toBe(want);
      host.shutdown(500);
      await run.result;
    }
  });

  it("reaps an orphaned grandchild (no zombie after 1 s)", async () => {
    const script = [
      // The middle shell exits at once; its background sleep is orphaned.
      "o=$(sh -c 'sleep 1 >/dev/null 2>&1 & echo $!')",
      "echo orphan=$o",
      "for i in $(seq 250); do case \"$(cat /proc/$o/stat 2>/dev/null)\" in *'(sleep)'*) break;; esac; sleep 0.02; done",
      // Re-parented to init (PID 1 in this namespace).
      "echo ppid:$(cut -d' ' -f4 /proc/$o/stat)",
      // Wait until it has exited (gone, or a zombie nobody reaped), then 1 s more.
      "while [ -e /proc/$o ] && ! grep -q ') Z ' /proc/$o/stat; do sleep 0.05; done",
      "sleep 1",
      "for p in /proc/[0-9]*; do read -r l < $p/stat 2>/dev/null && echo \"late:$l\"; done",
    ].join("; ");
    const r = track(await runInit({ env: { III_WORKER_CMD: cmd(script) } }));
    expect(r.code, r.stderr).toBe(0);
    const orphan = Number(/orphan=(\d+)/.exec(r.stdout)?.[1]);
    expect(orphan).toBeGreaterThan(1);
    expect(r.stdout).toContain("ppid:1\n");
    const late = r.stdout.split("\n").filter((l) => l.startsWith("late:"));
    expect(late.length).toBeGreaterThanOrEqual(2);
    // Field 3 is the state: no zombies anywhere in the namespace, and the orphan is gone.
    const zombies = late.filter((l) => l.slice(l.lastIndexOf(")") + 2).startsWith("Z"));
    expect(zombies).toEqual([]);
    expect(late.some((l) => l.startsWith(`late:${orphan} `))).toBe(false);
  });

  it("exit 7 → 7, killed by SIGKILL → 137, both reported over the channel", async () => {
    const seven = trackRun(await startInit({ env: { III_WORKER_CMD: cmd("exit 7") }, control: true }));
    const exit7 = await seven.host!.workloadExit;
    expect(exit7).toMatchObject({ code: 7, signal: null, requested: false });
    expect((await seven.result).code).toBe(7);

    const killed = trackRun(await startInit({ env: { III_WORKER_CMD: cmd("kill -9 $$") }, control: true }));
    const exitKill = await killed.host!.workloadExit;
    expect(exitKill).toMatchObject({ code: 137, signal: "SIGKILL" });
    expect((await killed.result).code).toBe(137);
  });

  it("SHUTDOWN with 2 s grace kills a group that ignores SIGTERM within grace + 1 s", async () => {
    const script = `trap "" TERM; sleep 1000 & sh -c 'trap "" TERM; sleep 1000' & echo started; wait`;
    const run = trackRun(await startInit({ env: { III_WORKER_CMD: cmd(script) }, control: true }));
    const host = run.host!;
    const ready = await host.ready;
    expect(ready.timings.map((t) => t.step)).toContain("mount:/proc");
    const started = new Promise<void>((resolve) => host.workloadStdout.on("data", (d: Buffer) => d.toString().includes("started") && resolve()));
    await started;
    await new Promise((r) => setTimeout(r, 200));
    const pids = run.namespacePids();
    expect(pids.length).toBeGreaterThanOrEqual(3); // sh, sleep, (sh exec'd into) sleep
    const t0 = performance.now();
    host.shutdown(2000);
    const exit = await host.workloadExit;
    const elapsed = performance.now() - t0;
    expect(elapsed).toBeGreaterThanOrEqual(1900);
    expect(elapsed).toBeLessThanOrEqual(3000);
    expect(exit).toMatchObject({ requested: true, escalated: true, code: 137, signal: "SIGKILL" });
    // Init reports only once the whole group is gone (and reaped).
    expect(pids.filter((p) => existsSync(`/proc/${p}`))).toEqual([]);
    expect((await run.result).code).toBe(137);
  });

  it("keeps reaping while the host stops reading the control channel (init's writes never block), then delivers every byte in order", async () => {
    // The workload orphans a `sleep 1` (reparented to init); it and three execs flood stdout, each up to its
    // stream's credit window: together far more than the socket holds, so a blocking writer would be stuck.
    const flood = 1024 * 1024;
    const floodCmd = (c: string) => `head -c ${flood} /dev/zero | tr '\\0' ${c}; echo; echo flood-done`;
    const script = `sh -c 'sleep 1 &'; ${floodCmd("x")}; exec sleep 1000`;
    const run = trackRun(await startInit({ env: { III_WORKER_CMD: cmd(script) }, control: true }));
    const host = run.host!;
    const chunks: Buffer[] = [];
    host.workloadStdout.on("data", (d: Buffer) => chunks.push(d));
    await host.ready;
    run.controlSocket!.pause();
    const execs = ["a", "b", "c"].map((c) => {
      const e = host.exec({ argv: ["sh", "-c", floodCmd(c)] });
      e.stdin.end();
      return { c, out: collect(e.stdout), exit: e.exit };
    });
    await new Promise((r) => setTimeout(r, 3000));
    const state = (pid: number) => /^\d+ \(.*\) (\S)/.exec(readFileSync(`/proc/${pid}/stat`, "utf8"))?.[1];
    const zombies = run.namespacePids().filter((p) => existsSync(`/proc/${p}`) && state(p) === "Z");
    expect(zombies, "the orphan was not reaped while the host was not reading").toEqual([]);
    run.controlSocket!.resume();
    for (const e of execs) {
      expect((await e.out).toString()).toBe(`${e.c.repeat(flood)}\nflood-done\n`);
      expect((await e.exit).code).toBe(0);
    }
    await waitFor(() => Buffer.concat(chunks).includes("flood-done"), 30_000);
    expect(Buffer.concat(chunks).toString()).toBe(`${"x".repeat(flood)}\nflood-done\n`);
    host.shutdown(1000);
    await host.workloadExit;
  });

  it("serves 8 concurrent execs x 50 commands with exact output", async () => {
    const run = trackRun(await startInit({ env: { III_WORKER_CMD: cmd("sleep 1000") }, control: true, timeoutMs: 120_000 }));
    const host = run.host!;
    await host.ready;
    const worker = async (w: number): Promise<number> => {
      let ok = 0;
      for (let i = 0; i < 50; i++) {
        const n = 200 + ((w * 50 + i) % 300);
        const e = host.exec({ argv: ["sh", "-c", `seq 1 ${n}; echo err-${w}-${i} >&2; echo end-${w}-${i}`] });
        e.stdin.end();
        const [out, err, status] = await Promise.all([collect(e.stdout), collect(e.stderr), e.exit]);
        const expected = `${Array.from({ length: n }, (_, k) => k + 1).join("\n")}\nend-${w}-${i}\n`;
        expect(out.toString()).toBe(expected);
        expect(err.toString()).toBe(`err-${w}-${i}\n`);
        expect(status.code).toBe(0);
        ok++;
      }
      return ok;
    };
    const counts = await Promise.all(Array.from({ length: 8 }, (_, w) => worker(w)));
    expect(counts).toEqual(Array(8).fill(50));
    host.shutdown(500);
    await run.result;
  });

  it("exec: timeout, 10 MiB stdin through cat, PTY size after RESIZE, SIGNAL, bad command", async () => {
    const run = trackRun(await startInit({ env: { III_WORKER_CMD: cmd("sleep 1000"), III_WORKER_USER: "app" }, control: true }));
    const host = run.host!;
    await host.ready;

    const t0 = performance.now();
    const sleeper = host.exec({ argv: ["sleep", "10"], timeoutMs: 1000 });
    sleeper.stdin.end();
    const timedOut = await sleeper.exit;
    expect(performance.now() - t0).toBeLessThanOrEqual(2000);
    expect(timedOut).toMatchObject({ timedOut: true, signal: "SIGTERM", code: 143 });

    const data = randomBytes(10 * 1024 * 1024);
    const cat = host.exec({ argv: ["cat"] });
    cat.stdin.end(data);
    const [echoed, catExit] = await Promise.all([collect(cat.stdout), cat.exit]);
    expect(catExit.code).toBe(0);
    expect(echoed.length).toBe(data.length);
    expect(createHash("sha256").update(echoed).digest("hex")).toBe(createHash("sha256").update(data).digest("hex"));

    const tty = host.exec({ argv: ["sh", "-c", "read x; stty size; tty; id -u"], tty: true, rows: 24, cols: 80 });
    await tty.started;
    tty.resize(33, 101);
    await new Promise((r) => setTimeout(r, 100));
    tty.stdin.write("go\n");
    const [ttyOut, ttyExit] = await Promise.all([collect(tty.stdout), tty.exit]);
    expect(ttyExit.code).toBe(0);
    expect(ttyOut.toString()).toContain("33 101");
    expect(ttyOut.toString()).toMatch(/\/dev\/pts\/\d+/);
    expect(ttyOut.toString()).toContain("1000");

    const sig = host.exec({ argv: ["sleep", "30"] });
    await sig.started;
    sig.signal("SIGINT");
    expect(await sig.exit).toMatchObject({ code: 130, signal: "SIGINT", timedOut: false });

    const missing = host.exec({ argv: ["/no/such/binary"] });
    const missingExit = await missing.exit;
    expect(missingExit.code).toBe(-1);
    expect(missingExit.error).toContain("ENOENT");

    // An exec that leaves an orphan behind: it re-parents to init and is reaped.
    const bg = host.exec({ argv: ["sh", "-c", "sleep 0.2 >/dev/null 2>&1 & echo $!"] });
    bg.stdin.end();
    const orphanPid = Number((await collect(bg.stdout)).toString().trim());
    expect(orphanPid).toBeGreaterThan(1);
    await new Promise((r) => setTimeout(r, 1000));
    const probe = host.exec({ argv: ["sh", "-c", `cat /proc/${orphanPid}/stat 2>/dev/null || echo gone`] });
    probe.stdin.end();
    expect((await collect(probe.stdout)).toString()).toBe("gone\n");

    expect(await host.ping()).toBeLessThan(1000);
    host.shutdown(200);
    expect((await run.result).code).toBe(143);
  });

  it("with III_WORKER_MEM_BYTES = 64 MiB a 256 MiB allocation is OOM-killed and reported", async () => {
    const run = trackRun(
      await startInit({
        env: { III_WORKER_CMD: cmd("dd if=/dev/zero of=/dev/null bs=256M count=1"), III_WORKER_MEM_BYTES: String(64 * 1024 * 1024) },
        control: true,
      }),
    );
    const ready = await run.host!.ready;
    const cg = ready.timings.find((t) => t.step === "cgroup");
    expect(cg?.status, JSON.stringify(cg)).toBe("ok");
    const exit = await run.host!.workloadExit;
    expect(exit).toMatchObject({ code: 137, signal: "SIGKILL", oomKilled: true });
    const res = await run.result;
    expect(res.code).toBe(137);
    expect(res.stderr).toContain("OOM-killed");
  });

  it("configures eth0, lo, hostname, /etc/hosts and resolv.conf (tap device in a network namespace)", async () => {
    const script =
      "ip -4 addr show dev eth0; ip link show dev eth0; ip link show dev lo; ip route; hostname; cat /etc/hosts /etc/resolv.conf; " +
      "for c in all default eth0 lo; do f=/proc/sys/net/ipv6/conf/$c/disable_ipv6; [ -e $f ] && echo ipv6-off:$c=$(cat $f); done; ip -6 addr | grep -c inet6 | sed 's/^/inet6:/'";
    const r = track(
      await runInit({
        env: {
          III_WORKER_CMD: cmd(script),
          III_INIT_IP: "100.96.0.6",
          III_INIT_CIDR: "30",
          III_INIT_GW: "100.96.0.5",
          III_INIT_DNS: "100.96.0.5",
          III_INIT_MTU: "1400",
          III_INIT_HOSTNAME: "image-resize",
        },
        unshare: ["--net"],
        prelude: "ip tuntap add dev eth0 mode tap",
        rootfs: withResolvSymlink(),
      }),
    );
    expect(r.code, r.stderr).toBe(0);
    expect(r.stdout).toContain("inet 100.96.0.6/30");
    expect(r.stdout).toContain("mtu 1400");
    expect(r.stdout).toMatch(/\d+: lo: <LOOPBACK,UP,LOWER_UP>/);
    expect(r.stdout).toMatch(/default via 100\.96\.0\.5 dev eth0/);
    expect(r.stdout).toContain("image-resize\n");
    expect(r.stdout).toContain("100.96.0.5\thost.iii.internal");
    expect(r.stdout).toContain("127.0.0.1\tlocalhost");
    expect(r.stdout).toContain("nameserver 100.96.0.5");
    // IPv6 off (the host stack is IPv4-only): no addresses at all, no ::1 in /etc/hosts.
    if (existsSync("/proc/sys/net/ipv6/conf/all/disable_ipv6")) {
      for (const c of ["all", "default", "eth0", "lo"]) expect(r.stdout).toContain(`ipv6-off:${c}=1\n`);
      expect(r.stdout).toContain("inet6:0\n");
      expect(r.stdout).not.toContain("::1");
    } else console.log("[init pid1 tests] no IPv6 in this kernel: disable_ipv6 check skipped");
    // The image's symlink into /run (a fresh tmpfs in the guest) was replaced by a file.
    expect(lstatSync(join(r.rootfs.root, "etc/resolv.conf")).isSymbolicLink()).toBe(false);
  });

  it("leaves /etc/hosts and resolv.conf alone when they already hold what it would write (a restart), and rewrites them when not", async () => {
    const rootfs = track({ rootfs: withResolvSymlink() }).rootfs;
    const boot = async (hostname: string) => {
      const r = await runInit({
        env: { III_WORKER_CMD: cmd("cat /etc/hosts /etc/resolv.conf"), III_INIT_IP: "100.96.0.6", III_INIT_CIDR: "30", III_INIT_GW: "100.96.0.5", III_INIT_DNS: "100.96.0.5", III_INIT_HOSTNAME: hostname },
        unshare: ["--net"],
        prelude: "ip tuntap add dev eth0 mode tap",
        rootfs,
      });
      expect(r.code, r.stderr).toBe(0);
      const files = ["etc/hosts", "etc/resolv.conf"].map((f) => lstatSync(join(rootfs.root, f)));
      return { stdout: r.stdout, files: files.map((st) => ({ file: st.isFile(), ino: st.ino, mtimeMs: st.mtimeMs })) };
    };
    const first = await boot("image-resize");
    expect(first.files.every((f) => f.file)).toBe(true);
    expect(first.stdout).toContain("image-resize");
    const again = await boot("image-resize");
    expect(again.files).toEqual(first.files);
    expect(again.stdout).toBe(first.stdout);
    const renamed = await boot("thumbnails");
    expect(renamed.files[0]!.ino).not.toBe(first.files[0]!.ino);
    expect(renamed.stdout).toContain("thumbnails");
    expect(renamed.stdout).not.toContain("image-resize");
    expect(readdirSync(join(rootfs.root, "etc")).filter((n) => n.endsWith(".iii-init.tmp"))).toEqual([]);
    // A workload that made /etc/hosts writable for everyone (same content) does not keep it so at the next start.
    chmodSync(join(rootfs.root, "etc/hosts"), 0o666);
    const loosened = await boot("thumbnails");
    expect(loosened.files[0]!.ino).not.toBe(renamed.files[0]!.ino);
    expect(lstatSync(join(rootfs.root, "etc/hosts")).mode & 0o7777).toBe(0o644);
  });

  it("skips VM-only steps (virtio-fs shares) with a printed reason", async () => {
    const r = track(
      await runInit({
        env: {
          III_WORKER_CMD: cmd("test -d /data && echo data-dir"),
          III_MOUNTS: JSON.stringify([{ tag: "share0", path: "/data", readOnly: true }]),
          III_INIT_SKIP: "mounts",
        },
      }),
    );
    expect(r.code, r.stderr).toBe(0);
    expect(r.stderr).toContain("shares: skipped (III_INIT_SKIP: virtio-fs needs a VM)");
  });

  it("fails a share that cannot be mounted with exit 72 (no virtio-fs tag outside a VM)", async () => {
    const r = track(
      await runInit({
        env: { III_WORKER_CMD: cmd("true"), III_MOUNTS: JSON.stringify([{ tag: "share0", path: "/data" }]) },
      }),
    );
    expect(r.code).toBe(ExitCode.MountShare);
    expect(stderrOf(r).trim().split("\n")).toHaveLength(1);
    expect(r.stderr).toMatch(/iii-init: error: mount share share0 at \/data: mount \/data failed: E\w+ \(errno \d+\) \(exit 72\)/);
  });

  it("forwards SIGHUP and SIGTERM sent to init to the workload's group and exits with its status", async () => {
    const script = `trap 'echo got-hup' HUP; trap 'echo got-term; exit 3' TERM; echo ready; while :; do sleep 0.1; done`;
    const run = trackRun(await startInit({ env: { III_WORKER_CMD: cmd(script) }, control: true }));
    const host = run.host!;
    await new Promise<void>((resolve) => host.workloadStdout.on("data", (d: Buffer) => d.toString().includes("ready") && resolve()));
    // The shell itself (not only its current sleep) gets each signal: traps run
    // once the foreground sleep returns.
    const initHostPid = childPid(run.proc.pid!);
    expect(initHostPid).toBeDefined();
    let out = "";
    host.workloadStdout.on("data", (d: Buffer) => (out += d.toString()));
    process.kill(initHostPid!, "SIGHUP");
    await waitFor(() => out.includes("got-hup"));
    process.kill(initHostPid!, "SIGTERM");
    const exit = await host.workloadExit;
    await waitFor(() => out.includes("got-term"));
    expect(exit).toMatchObject({ code: 3, requested: true, escalated: false });
    expect((await run.result).code).toBe(3);
  });

  it("RESTART_WORKLOAD stops the group and starts a new generation (dev hot reload)", async () => {
    const run = trackRun(await startInit({ env: { III_WORKER_CMD: cmd("echo gen-up-$$; exec sleep 1000") }, control: true }));
    const host = run.host!;
    const started: number[] = [];
    host.on("workloadStarted", (m) => started.push(m.generation));
    const exits: number[] = [];
    host.on("workloadExit", (m) => exits.push(m.generation));
    let out = "";
    host.workloadStdout.on("data", (d: Buffer) => (out += d.toString()));
    await host.ready;
    await waitFor(() => out.includes("gen-up-"));
    host.restartWorkload(500);
    await waitFor(() => started.includes(1) && (out.match(/gen-up-/g) ?? []).length === 2);
    expect(exits).toEqual([0]);
    host.shutdown(500);
    const final = await host.workloadExit;
    expect(final).toMatchObject({ generation: 1, requested: true, code: 143 });
    expect((await run.result).code).toBe(143);
  });

  it("reads the contract from III_INIT_ENV_FILE and III_INIT_ENV_B64", async () => {
    const rootfs = makeRootfs();
    mkdirSync(join(rootfs.root, ".iii"));
    writeFileSync(
      join(rootfs.root, ".iii/env.json"),
      encodeEnvFile({ cmd: ["/bin/sh", "-c", "echo file:$FROM_FILE:$(id -u):$(pwd); env | grep -c '^III_' || true"], user: "app", workdir: "/app", env: { FROM_FILE: "a b \"c\"" } }),
    );
    const r = track(await runInit({ rootfs, env: { III_INIT_ENV_FILE: "/.iii/env.json" } }));
    expect(r.code, r.stderr).toBe(0);
    expect(r.stdout).toBe('file:a b "c":1000:/app\n0\n');

    const b64 = encodeKernelCmdlineEnv({ cmd: "echo b64:$X", env: { X: "y" } });
    const [k, v] = [b64.slice(0, b64.indexOf("=")), b64.slice(b64.indexOf("=") + 1)];
    const r2 = track(await runInit({ env: { [k]: v } }));
    expect(r2.code, r2.stderr).toBe(0);
    expect(r2.stdout).toBe("b64:y\n");
  });

  it("an unknown user gives exit 75, a missing binary exit 76, each with one line", async () => {
    const r = track(await runInit({ env: { III_WORKER_CMD: cmd("true"), III_WORKER_USER: "ghost", III_INIT_NOFILE: "1024" } }));
    expect(r.code).toBe(ExitCode.WorkloadSetup);
    expect(stderrOf(r)).toBe('iii-init: error: workload user/workdir: user "ghost" not found in /etc/passwd (exit 75)\n');
    const r2 = track(await runInit({ env: { III_WORKER_CMD: JSON.stringify(["/no/such/bin"]), III_INIT_NOFILE: "1024" } }));
    expect(r2.code).toBe(ExitCode.Spawn);
    expect(stderrOf(r2)).toMatch(/^iii-init: error: spawn workload: \/no\/such\/bin: ENOENT .*\(exit 76\)\n$/);
    const r3 = track(await runInit({ env: { III_WORKER_CMD: cmd("true"), III_WORKER_WORKDIR: "/nope", III_INIT_NOFILE: "1024" } }));
    expect(r3.code).toBe(ExitCode.WorkloadSetup);
    expect(stderrOf(r3)).toBe("iii-init: error: workload user/workdir: workdir /nope does not exist (exit 75)\n");
  });

  for (const [name, env, pattern] of [
    ["III_INIT_CIDR=40", { III_WORKER_CMD: cmd("true"), III_INIT_IP: "100.96.0.6", III_INIT_CIDR: "40" }, /^iii-init: error: invalid guest contract: III_INIT_CIDR=40: must be between 0 and 32 \(exit 78\)$/],
    ["missing III_WORKER_CMD", {}, /^iii-init: error: invalid guest contract: III_WORKER_CMD: required: .* \(exit 78\)$/],
    ["unparsable III_MOUNTS", { III_WORKER_CMD: cmd("true"), III_MOUNTS: "share0:/data" }, /^iii-init: error: invalid guest contract: III_MOUNTS=share0:\/data: not JSON: .* \(exit 78\)$/],
  ] as const) {
    it(`bad env (${name}) gives one clear line and exit 78`, async () => {
      const r = track(await runInit({ env }));
      expect(r.code).toBe(ExitCode.BadEnv);
      const lines = r.stderr.trim().split("\n");
      expect(lines).toHaveLength(1);
      expect(lines[0]).toMatch(pattern);
      expect(r.stdout).toBe("");
    });
  }
});
