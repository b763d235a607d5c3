// The guest init (dist/init.krun, static, QuickJS) as PID 1 on the host: min/median/max over ROUNDS runs.
// Needs root (unshare, chroot), busybox-static, `pnpm build` and `build:static`.
//   size         bytes on disk of what a guest needs injected (the one file)
//   --version    `chroot <busybox root> /init.krun --version`: wall ms and max RSS (GNU time)
//   boot         PID 1 in a PID+mount namespace: spawn → READY on the control socket (wall), READY.bootMs
//   idle RSS     VmRSS of init (/proc/<pid>/status) with the workload idle, after READY
//   exec true    EXEC ["true"] → EXIT over the control socket, median of EXECS sequential runs (cgroups skipped)
//   shutdown     SHUTDOWN sent → namespace gone
import { execFileSync, spawn, spawnSync } from "node:child_process";
import { chmodSync, copyFileSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync, symlinkSync, writeFileSync } from "node:fs";
import { createServer } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { HostControl } from "../dist/index.js";

const pkg = new URL("..", import.meta.url).pathname;
const INIT = join(pkg, "dist/init.krun");
const ROUNDS = Number(process.env.ROUNDS ?? 7);
const EXECS = Number(process.env.EXECS ?? 30);
const BUSYBOX = "/usr/bin/busybox";

function rootfs() {
  const base = mkdtempSync(join(tmpdir(), "iii-init-bench-"));
  const root = join(base, "root");
  for (const d of ["bin", "etc", "proc", "sys", "dev", "tmp", "run"]) mkdirSync(join(root, d), { recursive: true });
  copyFileSync(BUSYBOX, join(root, "bin/busybox"));
  chmodSync(join(root, "bin/busybox"), 0o755);
  for (const a of ["sh", "sleep", "true"]) symlinkSync("busybox", join(root, "bin", a));
  writeFileSync(join(root, "etc/passwd"), "root:x:0:0:root:/root:/bin/sh\n");
  copyFileSync(INIT, join(root, "init.krun"));
  chmodSync(join(root, "init.krun"), 0o755);
  return { base, root };
}

function children(pid) {
  try {
    return readdirSync(`/proc/${pid}/task`).flatMap((t) => readFileSync(`/proc/${pid}/task/${t}/children`, "utf8").trim().split(" ").filter(Boolean).map(Number));
  } catch {
    return [];
  }
}

function version(root) {
  const t0 = performance.now();
  const r = spawnSync("/usr/bin/time", ["-f", "%M", "/usr/sbin/chroot", root, "/init.krun", "--version"], { encoding: "utf8" });
  const ms = performance.now() - t0;
  if (r.status !== 0) throw new Error(`--version failed: ${r.stderr}`);
  return { ms, rssKiB: Number(r.stderr.trim().split("\n").pop()) };
}

async function boot(root) {
  const sock = join(root, "control.sock");
  rmSync(sock, { force: true });
  const server = createServer();
  await new Promise((r) => server.listen(sock, r));
  const accepted = new Promise((r) => server.once("connection", r));
  const t0 = performance.now();
  const proc = spawn("/usr/bin/unshare", ["--pid", "--fork", "--kill-child", "--mount", "--uts", "--propagation", "private", "/usr/sbin/chroot", root, "/init.krun"], {
    env: { PATH: "/bin", III_WORKER_CMD: '["/bin/sleep","1000"]', III_INIT_CONTROL: "unix:/control.sock", III_INIT_NOFILE: "1024", III_INIT_SKIP: "cgroup" },
    stdio: ["ignore", "ignore", "pipe"],
  });
  let stderr = "";
  proc.stderr.on("data", (d) => (stderr += d));
  const exited = new Promise((r) => proc.on("close", r));
  const control = HostControl.attach(await accepted);
  control.on("error", () => {});
  const ready = await control.ready;
  const readyMs = performance.now() - t0;
  await new Promise((r) => setTimeout(r, 200));
  const initPid = children(proc.pid)[0];
  const rssKiB = Number(/^VmRSS:\s+(\d+)/m.exec(readFileSync(`/proc/${initPid}/status`, "utf8"))?.[1]);
  const execMs = [];
  for (let i = 0; i < EXECS; i++) {
    const t = performance.now();
    const e = control.exec({ argv: ["true"] });
    e.stdin.end();
    e.stdout.resume();
    e.stderr.resume();
    const status = await e.exit;
    if (status.code !== 0) throw new Error(`exec true: ${JSON.stringify(status)}`);
    execMs.push(performance.now() - t);
  }
  execMs.sort((a, b) => a - b);
  const t1 = performance.now();
  control.shutdown(1000);
  await exited;
  const shutdownMs = performance.now() - t1;
  server.close();
  if (!Number.isFinite(rssKiB)) throw new Error(`no RSS: ${stderr}`);
  return { readyMs, bootMs: ready.bootMs, rssKiB, execMs: execMs[Math.floor(execMs.length / 2)], shutdownMs };
}

const stats = (xs) => {
  const s = [...xs].sort((a, b) => a - b);
  return { min: s[0], median: s[Math.floor(s.length / 2)], max: s[s.length - 1] };
};
const fmt = (x, digits) => x.toFixed(digits).padStart(8);

const { base, root } = rootfs();
try {
  const samples = [];
  for (let i = 0; i < ROUNDS; i++) {
    samples.push({ ...version(root), ...Object.fromEntries(Object.entries(await boot(root)).map(([k, v]) => [`boot_${k}`, v])) });
  }
  console.log(`host: ${execFileSync("uname", ["-sr"], { encoding: "utf8" }).trim()}, ${ROUNDS} rounds; min / median / max`);
  console.log(`${"size (MB, injected)".padEnd(30)} ${fmt(statSync(INIT).size / 1e6, 2)}`);
  const rows = [
    ["--version wall (ms)", "ms", 1],
    ["--version max RSS (MiB)", "rssKiB", 1, 1 / 1024],
    ["boot: spawn→READY (ms)", "boot_readyMs", 1],
    ["boot: READY.bootMs (ms)", "boot_bootMs", 2],
    ["idle PID 1 VmRSS (MiB)", "boot_rssKiB", 1, 1 / 1024],
    [`exec true, median of ${EXECS} (ms)`, "boot_execMs", 2],
    ["SHUTDOWN→gone (ms)", "boot_shutdownMs", 1],
  ];
  for (const [label, key, digits, scale = 1] of rows) {
    const x = stats(samples.map((s) => s[key] * scale));
    console.log(`${label.padEnd(30)} ${fmt(x.min, digits)}${fmt(x.median, digits)}${fmt(x.max, digits)}`);
  }
} finally {
  rmSync(base, { recursive: true, force: true });
}
