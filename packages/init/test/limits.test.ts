// The worker's limits and init's own protection, with real processes: init as
// PID 1 in a PID namespace (harness.ts). On hosts whose controllers sit in
// cgroup v1 hierarchies (this CI machine) init enforces the same layout in
// private v1 mounts; checks that need something this host lacks skip with a
// printed reason.
import { afterAll, afterEach, describe, expect, it } from "vitest";
import { readFileSync } from "node:fs";
import { canRunNamespaces, collect, startInit, sweepWorkerCgroups, type InitRun } from "./harness.js";
import type { HostControl } from "../src/protocol/host.js";

const skipReason = canRunNamespaces();
if (skipReason) console.log(`[init limits tests] skipped: ${skipReason}`);

/** CAP_SYS_RESOURCE (bit 24) in our effective set: needed to lower oom_score_adj below 0. */
const HAS_SYS_RESOURCE = ((BigInt(`0x${/^CapEff:\s*([0-9a-f]+)$/m.exec(readFileSync("/proc/self/status", "utf8"))?.[1] ?? "0"}`) >> 24n) & 1n) === 1n;
const oomSkip = skipReason ?? (HAS_SYS_RESOURCE ? null : "no CAP_SYS_RESOURCE in this sandbox: oom_score_adj cannot go below 0 here (init warns in READY)");
if (!skipReason && oomSkip) console.log(`[init limits tests] oom_score_adj -1000 check skipped: ${oomSkip}`);

const startedAt = Date.now() - 1000;
afterAll(() => sweepWorkerCgroups(startedAt));
const runs: InitRun[] = [];
afterEach(async () => {
  for (const run of runs.splice(0)) {
    if (run.proc.exitCode === null) run.proc.kill("SIGKILL");
    // Let a failed run's processes go, so its cgroups can be swept.
    await Promise.race([run.result, new Promise((r) => setTimeout(r, 5000))]);
    run.rootfs.cleanup();
  }
});

const cmd = (script: string): string => JSON.stringify(["/bin/sh", "-c", script]);

/**
 * A fork bomb bounded in size and time: forks `sleep <secs>` until `cap` of
 * them started or `tries` forks were attempted. `command eval` keeps busybox
 * sh alive when a fork fails (a plain `&` would end the shell at the first
 * EAGAIN). With no limit it reaches `cap` processes, far above the limits tested.
 */
const bomb = (secs: number, cap = 300, tries = 20000): string =>
  `n=0; i=0; while [ $i -lt ${tries} ] && [ $n -lt ${cap} ]; do if command eval 'sleep ${secs} &' 2>/dev/null; then n=$((n+1)); fi; i=$((i+1)); done`;

async function start(env: Record<string, string>, timeoutMs = 60_000): Promise<{ run: InitRun; host: HostControl }> {
  const run = await startInit({ env, control: true, timeoutMs });
  runs.push(run);
  return { run, host: run.host! };
}

async function execOut(host: HostControl, argv: string[], opts: { tty?: boolean; timeoutMs?: number } = {}) {
  const e = host.exec({ argv, ...(opts.tty ? { tty: true, rows: 24, cols: 80 } : {}), ...(opts.timeoutMs ? { timeoutMs: opts.timeoutMs } : {}) });
  e.stdin.end();
  const [out, err, exit] = await Promise.all([collect(e.stdout), collect(e.stderr), e.exit]);
  return { out: out.toString(), err: err.toString(), exit };
}

function waitOutput(host: HostControl, marker: string): Promise<void> {
  let buf = "";
  return new Promise((resolve) =>
    host.workloadStdout.on("data", (d: Buffer) => {
      buf += d.toString();
      if (buf.includes(marker)) resolve();
    }),
  );
}

/** Host pids of the namespace's processes whose argv is exactly `argv`. */
function withArgv(run: InitRun, argv: string[]): number[] {
  const want = `${argv.join("\0")}\0`;
  return run.namespacePids().filter((p) => {
    try {
      return readFileSync(`/proc/${p}/cmdline`, "utf8") === want;
    } catch {
      return false;
    }
  });
}

const CG = "(?:iii-worker-[0-9a-f]{8}|worker)";

describe.skipIf(skipReason !== null)("worker limits (init as PID 1 in a namespace)", () => {
  it("a fork bomb in the workload stays at pidsMax; meanwhile an exec answers and SHUTDOWN ends it", async () => {
    const N = 32;
    const { run, host } = await start({ III_WORKER_CMD: cmd(`echo bombing; ${bomb(20)}; echo bomb-done; wait`), III_WORKER_PIDS_MAX: String(N) });
    const ready = await host.ready;
    const cg = ready.timings.find((t) => t.step === "cgroup");
    expect(cg?.status, JSON.stringify(cg)).toBe("ok");
    expect(cg?.detail).toContain(`workload pids.max=${N}`);
    console.log(`[init limits tests] READY cgroup: ${cg?.detail}`);
    const bombing = waitOutput(host, "bombing");
    await bombing;
    // Before any exec, every process of the namespace but init is the workload's.
    let peak = 0;
    const t0 = performance.now();
    while (performance.now() - t0 < 2500) {
      peak = Math.max(peak, run.namespacePids().length);
      await new Promise((r) => setTimeout(r, 25));
    }
    console.log(`[init limits tests] fork bomb under pids.max=${N}: at most ${peak} processes seen in 2.5 s`);
    expect(peak).toBeLessThanOrEqual(N);
    expect(peak).toBeGreaterThanOrEqual(N - 4); // it did fill the group

    // The group is full: an exec still starts (the worker keeps a reserve) and answers quickly.
    const t1 = performance.now();
    const t = await execOut(host, ["true"]);
    const execMs = performance.now() - t1;
    console.log(`[init limits tests] exec true during the bomb: ${execMs.toFixed(0)} ms`);
    expect(t.exit).toMatchObject({ code: 0 });
    expect(execMs).toBeLessThan(3000);
    expect(await host.ping()).toBeLessThan(1000);

    // Stopping a workload whose group sits at pids.max.
    const t2 = performance.now();
    host.shutdown(500);
    const exit = await host.workloadExit;
    expect(performance.now() - t2).toBeLessThan(4000);
    expect(exit.requested).toBe(true);
    await run.result;
  });

  it("a pidsMax below init's own thread count still starts the workload and (pipe) execs: init's threads are not charged", async () => {
    const N = 3;
    const { run, host } = await start({ III_WORKER_CMD: cmd(`echo up; ${bomb(20, 50, 2000)}; echo n=$n; exec sleep 1000`), III_WORKER_PIDS_MAX: String(N) });
    let out = "";
    host.workloadStdout.on("data", (d: Buffer) => (out += d.toString()));
    await host.ready;
    await new Promise<void>((resolve, reject) => {
      const t = setTimeout(() => reject(new Error(`no n= line: ${out}`)), 10_000);
      host.workloadStdout.on("data", () => out.includes("n=") && (clearTimeout(t), resolve()));
    });
    // sh + its sleeps ≤ 3.
    expect(Number(/n=(\d+)/.exec(out)?.[1])).toBeLessThanOrEqual(N - 1);
    const e = await execOut(host, ["sh", "-c", `${bomb(20, 50, 2000)}; echo n=$n`]);
    expect(e.exit.code).toBe(0);
    expect(Number(/n=(\d+)/.exec(e.out)?.[1])).toBeLessThanOrEqual(N - 1);
    host.shutdown(200);
    await run.result;
  });

  it("execs are born in the worker group (pipe and tty), get its pids limit, and a timeout kills the exec's whole tree", async () => {
    const N = 24;
    const { run, host } = await start({ III_WORKER_CMD: cmd("echo up; exec sleep 1000"), III_WORKER_PIDS_MAX: String(N) });
    await host.ready;
    const pipe = await execOut(host, ["cat", "/proc/self/cgroup"]);
    expect(pipe.exit.code).toBe(0);
    const v2 = /^0::(.*)$/m.exec(pipe.out)?.[1];
    expect(v2, pipe.out).toMatch(new RegExp(`^/${CG}/exec-\\d+$`));
    // pids in a v1 hierarchy (this host): the exec is in the same leaf there.
    const pidsV1 = /^\d+:(?:[^:]*,)?pids(?:,[^:]*)?:(.*)$/m.exec(pipe.out);
    if (pidsV1) expect(pidsV1[1]).toBe(v2);
    const tty = await execOut(host, ["cat", "/proc/self/cgroup"], { tty: true });
    expect(tty.exit.code).toBe(0);
    expect(/^0::(.*?)\r?$/m.exec(tty.out)?.[1], tty.out).toMatch(new RegExp(`^/${CG}/exec-\\d+$`));
    // The workload is in its own leaf.
    const wlLeaf = await execOut(host, ["sh", "-c", "cat /proc/$(pidof sleep | tr ' ' '\\n' | head -1)/cgroup"]);
    expect(/^0::(.*)$/m.exec(wlLeaf.out)?.[1], wlLeaf.out).toMatch(new RegExp(`^/${CG}/workload$`));

    // An exec's fork bomb is held at pidsMax too.
    const b = await execOut(host, ["sh", "-c", `${bomb(5, 200, 3000)}; echo n=$n`]);
    const n = Number(/n=(\d+)/.exec(b.out)?.[1]);
    console.log(`[init limits tests] exec fork bomb under pids.max=${N}: ${n} sleeps started`);
    expect(n).toBeLessThan(N);

    // A timed-out exec: its fork bomb, a setsid'd child in another session, and itself ignoring SIGTERM.
    const t0 = performance.now();
    const timed = await execOut(host, ["sh", "-c", `trap '' TERM; setsid sleep 32 & ${bomb(31, 100, 100000)}; wait`], { timeoutMs: 1500 });
    const elapsed = performance.now() - t0;
    expect(timed.exit).toMatchObject({ timedOut: true });
    expect(elapsed).toBeLessThan(1500 + 1000 + 2500);
    expect(withArgv(run, ["sleep", "31"])).toEqual([]);
    expect(withArgv(run, ["sleep", "32"])).toEqual([]);
    expect(withArgv(run, ["sleep", "1000"]).length).toBe(1); // the workload lives on
    host.shutdown(200);
    await run.result;
  });

  it("init lives in a cgroup of its own, outside the worker group", async () => {
    const { run, host } = await start({ III_WORKER_CMD: cmd("exec sleep 1000") });
    await host.ready;
    // The Node init enters a leaf for the instant of a spawn (this exec's too): read after that window.
    const r = await execOut(host, ["sh", "-c", "sleep 0.5; cat /proc/1/cgroup; echo --; cat /proc/self/cgroup"]);
    const [initCg, selfCg] = r.out.split("--\n");
    const initV2 = /^0::(.*)$/m.exec(initCg!)?.[1];
    expect(initV2, r.out).toMatch(/^\/(?:iii-init-[0-9a-f]{8}|init)$/);
    expect(/^0::(.*)$/m.exec(selfCg!)?.[1]).not.toContain(initV2!);
    // In every v1 hierarchy too, init is outside the worker's groups.
    for (const line of initCg!.split("\n").filter((l) => l && !l.startsWith("0::"))) {
      expect(line).not.toMatch(new RegExp(`:/${CG}(/|$)`));
    }
    host.shutdown(200);
    await run.result;
  });

  it.skipIf(oomSkip !== null)("init's oom_score_adj is -1000; the workload and execs get 500", async () => {
    const { run, host } = await start({ III_WORKER_CMD: cmd("exec sleep 1000"), III_WORKER_USER: "app" });
    const ready = await host.ready;
    expect(ready.timings.find((t) => t.step === "oom")?.status).toBe("ok");
    const r = await execOut(host, ["sh", "-c", "cat /proc/1/oom_score_adj /proc/self/oom_score_adj; cat /proc/$(pidof sleep)/oom_score_adj; echo -1000 > /proc/self/oom_score_adj || echo refused"]);
    expect(r.out).toBe("-1000\n500\n500\nrefused\n");
    const tty = await execOut(host, ["cat", "/proc/self/oom_score_adj"], { tty: true });
    expect(tty.out.trim()).toBe("500");
    host.shutdown(200);
    await run.result;
  });

  it("cpus 0.5 (III_WORKER_CPU_MAX=\"50000 100000\") limits the worker to half a CPU", async () => {
    const { run, host } = await start({ III_WORKER_CMD: cmd("echo spinning; while :; do :; done"), III_WORKER_CPU_MAX: "50000 100000" });
    const ready = await host.ready;
    const cg = ready.timings.find((t) => t.step === "cgroup");
    expect(cg?.status, JSON.stringify(cg)).toBe("ok");
    await waitOutput(host, "spinning");
    // Read the limit where init put it: cpu.max (cgroup2) or cfs_quota_us/cfs_period_us (v1 fallback).
    const r = await execOut(host, [
      "sh",
      "-c",
      [
        "w=$(sed -n 's/^0:://p' /proc/self/cgroup); w=${w%/*}",
        "if [ -f /sys/fs/cgroup$w/cpu.max ]; then cat /sys/fs/cgroup$w/cpu.max; fi",
        "v=$(sed -n 's/^[0-9]*:\\(cpu,cpuacct\\|cpu\\):\\(.*\\)$/\\2/p' /proc/self/cgroup); v=${v%/*}",
        "if [ -f /run/iii/cgroup-cpu$v/cpu.cfs_quota_us ]; then echo $(cat /run/iii/cgroup-cpu$v/cpu.cfs_quota_us) $(cat /run/iii/cgroup-cpu$v/cpu.cfs_period_us); fi",
      ].join("; "),
    ]);
    expect(r.out, `${r.out}${r.err}`).toBe("50000 100000\n");
    // And it holds: the spinning shell gets about half a CPU (clock ticks from the host's /proc).
    const [spinner] = run.namespacePids().filter((p) => readFileSync(`/proc/${p}/cmdline`, "utf8").startsWith("/bin/sh\0-c\0echo spinning"));
    expect(spinner).toBeDefined();
    const ticks = (): number => {
      const f = readFileSync(`/proc/${spinner}/stat`, "utf8");
      const rest = f.slice(f.lastIndexOf(")") + 2).split(" ");
      return Number(rest[11]) + Number(rest[12]); // utime + stime
    };
    const a = ticks();
    const t0 = performance.now();
    await new Promise((res) => setTimeout(res, 2000));
    const share = (ticks() - a) / 100 / ((performance.now() - t0) / 1000);
    console.log(`[init limits tests] spinning workload under cpu.max 50000 100000: ${share.toFixed(2)} CPU`);
    expect(share).toBeLessThan(0.65);
    expect(share).toBeGreaterThan(0.05);
    host.shutdown(200);
    await run.result;
  });
});
