// PID 1: boot steps in the order of DESIGN §5, control channel, workload
// supervision, exec serving, then sync and reboot (or exit outside a VM).

import { chownSync, existsSync, renameSync, mkdirSync, readFileSync, statSync, symlinkSync, writeFileSync } from "node:fs";
import { performance } from "node:perf_hooks";
import pkg from "../../package.json" with { type: "json" };
import { ContractError, decodeGuestEnv, ENV, mergeEnvSources, type GuestConfig } from "../contract/env.js";
import { ExitCode, InitError } from "../errors.js";
import { ControlChannel } from "../protocol/channel.js";
import { PROTOCOL_VERSION } from "../protocol/frame.js";
import type { BootStepTiming, Message, WorkloadExitMessage } from "../protocol/messages.js";
import { setupCgroup, type WorkerCgroup } from "./cgroup.js";
import { ExecServer, envForUser } from "./exec.js";
import { configureInterface, disableIpv6, hostsFile, loopbackUp, nodeNetPlatform, resolvConf } from "./network.js";
import { libc, MS, PR_SET_CHILD_SUBREAPER, RB_AUTOBOOT, RLIMIT_NOFILE, SysError, type Libc } from "./native.js";
import { openControlTransport, type ControlTransport } from "./port.js";
import { INIT_OOM_SCORE_ADJ, protectInitFromOom, SpawnError } from "./process.js";
import { Reaper } from "./reaper.js";
import { resolveUser, UserResolveError } from "./users.js";
import { Workload } from "./workload.js";

/** The package version (package.json, inlined by the bundler). */
export const INIT_VERSION: string = pkg.version;
/** Inode of the initial PID namespace (PROC_PID_INIT_INO): only there does reboot(2) end the machine. */
const PROC_PID_INIT_INO = 0xeffffffc;
const DEFAULT_SIGNAL_GRACE_MS = 10_000;

function line(message: string): void {
  process.stderr.write(`iii-init: ${message}\n`);
}

class BootClock {
  readonly timings: BootStepTiming[] = [];
  readonly t0 = performance.now();

  run<T>(step: string, fn: () => T): T {
    const start = performance.now();
    const result = fn();
    this.timings.push({ step, ms: round(performance.now() - start), status: "ok" });
    return result;
  }

  async runAsync<T>(step: string, fn: () => Promise<T>): Promise<T> {
    const start = performance.now();
    const result = await fn();
    this.timings.push({ step, ms: round(performance.now() - start), status: "ok" });
    return result;
  }

  skip(step: string, detail: string, announce: boolean): void {
    this.timings.push({ step, ms: 0, status: "skipped", detail });
    if (announce) line(`${step}: skipped (${detail})`);
  }

  warn(step: string, start: number, detail: string): void {
    this.timings.push({ step, ms: round(performance.now() - start), status: "warn", detail });
    line(`warning: ${step}: ${detail}`);
  }

  get elapsedMs(): number {
    return round(performance.now() - this.t0);
  }
}

function round(ms: number): number {
  return Math.round(ms * 100) / 100;
}

function mountedAt(path: string): string | null {
  try {
    for (const l of readFileSync("/proc/self/mounts", "utf8").split("\n")) {
      const f = l.split(" ");
      if (f[1] === path) return f[2] ?? null;
    }
  } catch {}
  return null;
}

const PSEUDO_FS: Array<{ target: string; fstype: string; source: string; flags: number; data: string | null }> = [
  { target: "/proc", fstype: "proc", source: "proc", flags: MS.NOSUID | MS.NODEV | MS.NOEXEC | MS.RELATIME, data: null },
  { target: "/sys", fstype: "sysfs", source: "sysfs", flags: MS.NOSUID | MS.NODEV | MS.NOEXEC | MS.RELATIME, data: null },
  { target: "/dev", fstype: "devtmpfs", source: "devtmpfs", flags: MS.NOSUID | MS.RELATIME, data: "mode=0755" },
  {
    target: "/dev/pts",
    fstype: "devpts",
    source: "devpts",
    flags: MS.NOSUID | MS.NOEXEC | MS.RELATIME,
    data: "newinstance,ptmxmode=0666,mode=0620,gid=5",
  },
  { target: "/dev/shm", fstype: "tmpfs", source: "shm", flags: MS.NOSUID | MS.NODEV | MS.RELATIME, data: "mode=1777,size=50%" },
  { target: "/tmp", fstype: "tmpfs", source: "tmpfs", flags: MS.NOSUID | MS.NODEV | MS.RELATIME, data: "mode=1777" },
  { target: "/run", fstype: "tmpfs", source: "tmpfs", flags: MS.NOSUID | MS.NODEV | MS.RELATIME, data: "mode=0755" },
];

function mountPseudoFilesystems(l: Libc, clock: BootClock): void {
  for (const m of PSEUDO_FS) {
    clock.run(`mount:${m.target}`, () => {
      // /proc first; later checks read /proc/self/mounts. A kernel with
      // CONFIG_DEVTMPFS_MOUNT has already mounted /dev.
      if (m.target !== "/proc" && mountedAt(m.target) === m.fstype) return;
      if (m.target === "/proc" && existsSync("/proc/self/stat")) return;
      try {
        mkdirSync(m.target, { recursive: true, mode: 0o755 });
        l.mount(m.source, m.target, m.fstype, m.flags, m.data);
      } catch (err) {
        throw new InitError("MountRoot", `mount ${m.target} (${m.fstype})`, (err as Error).message, { cause: err });
      }
    });
  }
  // Conventional links a fresh devtmpfs lacks (best effort).
  for (const [link, target] of [
    ["/dev/fd", "/proc/self/fd"],
    ["/dev/stdin", "/proc/self/fd/0"],
    ["/dev/stdout", "/proc/self/fd/1"],
    ["/dev/stderr", "/proc/self/fd/2"],
  ] as const) {
    try {
      if (!existsSync(link)) symlinkSync(target, link);
    } catch {}
  }
}

function mountShares(l: Libc, config: GuestConfig, clock: BootClock): void {
  for (const share of config.mounts) {
    clock.run(`share:${share.path}`, () => {
      try {
        mkdirSync(share.path, { recursive: true });
        l.mount(share.tag, share.path, "virtiofs", (share.readOnly ? MS.RDONLY : 0) | MS.RELATIME, null);
      } catch (err) {
        throw new InitError("MountShare", `mount share ${share.tag} at ${share.path}`, (err as Error).message, { cause: err });
      }
    });
  }
}

/**
 * Write via a temporary file and rename: the rename replaces a symlink itself
 * (images often link /etc/resolv.conf into /run, which is a fresh tmpfs here).
 */
function replaceFile(path: string, content: string): void {
  const tmp = `${path}.iii-init.tmp`;
  writeFileSync(tmp, content, { mode: 0o644 });
  renameSync(tmp, path);
}

function isRootPidNamespace(): boolean {
  try {
    return statSync("/proc/self/ns/pid").ino === PROC_PID_INIT_INO;
  } catch {
    return false;
  }
}

interface Runtime {
  l: Libc | null;
  config: GuestConfig | null;
  channel: ControlChannel | null;
  transport: ControlTransport | null;
  cgroup: WorkerCgroup | null;
  reaper: Reaper | null;
  execs: ExecServer | null;
  rebootAtEnd: boolean;
}

/** Kill what is left, flush, sync, then reboot (VM) or exit (namespace, III_INIT_NO_REBOOT). */
async function finish(rt: Runtime, exitCode: number): Promise<never> {
  rt.execs?.killAll();
  rt.cgroup?.killAll();
  if (process.pid === 1) {
    try {
      process.kill(-1, "SIGKILL");
    } catch {}
  }
  // Let the kernel deliver the kills and reap what is left, so the cgroup can go.
  const deadline = performance.now() + 1000;
  while (performance.now() < deadline && rt.reaper && process.pid === 1) {
    await new Promise((r) => setTimeout(r, 20));
    rt.reaper.scan();
    if (!hasChildren()) break;
  }
  await rt.cgroup?.remove();
  if (rt.channel && rt.transport) {
    const io = rt.transport.io;
    await Promise.race([
      new Promise<void>((resolve) => {
        io.end(() => resolve());
      }),
      new Promise((r) => setTimeout(r, 2000)),
    ]);
  }
  rt.l?.sync();
  if (rt.rebootAtEnd && rt.l) {
    try {
      rt.l.reboot(RB_AUTOBOOT);
    } catch (err) {
      line(`reboot: ${(err as Error).message}`);
    }
  }
  process.exit(exitCode);
}

function hasChildren(): boolean {
  try {
    return readFileSync(`/proc/${process.pid}/task/${process.pid}/children`, "utf8").trim() !== "";
  } catch {
    return false;
  }
}

async function fail(rt: Runtime, err: unknown): Promise<never> {
  let code: number = ExitCode.InitInternal;
  let message: string;
  if (err instanceof ContractError) {
    code = err.exitCode;
    message = `invalid guest contract: ${err.message}`;
  } else if (err instanceof InitError) {
    code = err.exitCode;
    message = err.message;
  } else {
    message = `internal error: ${(err as Error)?.stack ?? String(err)}`;
  }
  line(`error: ${message} (exit ${code})`);
  rt.channel?.send({ type: "ERROR", stream: 0, code: "INIT_FAILED", message: `${message} (exit ${code})` });
  return finish(rt, code);
}

export async function runInit(env: NodeJS.ProcessEnv = process.env): Promise<never> {
  const clock = new BootClock();
  const rt: Runtime = {
    l: null,
    config: null,
    channel: null,
    transport: null,
    cgroup: null,
    reaper: null,
    execs: null,
    rebootAtEnd: false,
  };
  try {
    return await boot(rt, clock, env);
  } catch (err) {
    return fail(rt, err);
  }
}

async function boot(rt: Runtime, clock: BootClock, env: NodeJS.ProcessEnv): Promise<never> {
  // 1. The contract. A bad one ends init before it touches anything.
  const config = clock.run("env", () => {
    const file = env[ENV.ENV_FILE];
    let text: string | null = null;
    if (file) {
      try {
        text = readFileSync(file, "utf8");
      } catch (err) {
        throw new ContractError(ENV.ENV_FILE, file, `cannot read: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}`);
      }
    }
    return decodeGuestEnv(mergeEnvSources(env, text));
  });
  rt.config = config;
  const skip = new Set(config.skip);
  const l = clock.run("libc", () => libc());
  rt.l = l;

  // 2. Pseudo-filesystems.
  mountPseudoFilesystems(l, clock);
  rt.rebootAtEnd = !config.noReboot && process.pid === 1 && isRootPidNamespace();
  const reaper = new Reaper(l);
  rt.reaper = reaper;
  reaper.start();
  if (process.pid !== 1) {
    // Not PID 1 (e.g. run under another init): become the orphans' reaper anyway.
    try {
      l.prctl(PR_SET_CHILD_SUBREAPER, 1);
    } catch {}
  }

  // 3. Init out of the OOM killer's reach (its children get a positive score), and cgroups (optional).
  {
    const start = performance.now();
    try {
      protectInitFromOom();
      clock.timings.push({ step: "oom", ms: round(performance.now() - start), status: "ok", detail: `oom_score_adj ${INIT_OOM_SCORE_ADJ}` });
    } catch (err) {
      clock.warn("oom", start, `oom_score_adj ${INIT_OOM_SCORE_ADJ}: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}`);
    }
  }
  if (skip.has("cgroup")) clock.skip("cgroup", `${ENV.SKIP}`, true);
  else {
    const start = performance.now();
    try {
      const inVm = isRootPidNamespace();
      const { cgroup, warnings } = setupCgroup(
        l,
        { memoryBytes: config.memoryBytes, pidsMax: config.pidsMax, cpuMax: config.cpuMax },
        { unique: !inVm, headroom: inVm },
      );
      rt.cgroup = cgroup;
      if (warnings.length > 0) clock.warn("cgroup", start, `${warnings.join("; ")} (applied: ${cgroup.description})`);
      else clock.timings.push({ step: "cgroup", ms: round(performance.now() - start), status: "ok", detail: cgroup.description });
    } catch (err) {
      clock.warn("cgroup", start, `${(err as Error).message}; limits not applied`);
    }
  }

  // 4. Extra virtio-fs shares (required when asked for).
  if (config.mounts.length === 0) clock.skip("shares", `${ENV.MOUNTS} empty`, false);
  else if (skip.has("mounts")) clock.skip("shares", `${ENV.SKIP}: virtio-fs needs a VM`, true);
  else mountShares(l, config, clock);

  // 5. Hostname, /etc/hosts, /etc/resolv.conf (optional).
  if (skip.has("hostname")) clock.skip("hostname", ENV.SKIP, true);
  else if (config.hostname) {
    const start = performance.now();
    try {
      clock.run("hostname", () => l.sethostname(config.hostname!));
    } catch (err) {
      clock.warn("hostname", start, (err as Error).message);
    }
  } else clock.skip("hostname", `${ENV.HOSTNAME} not set`, false);
  const gateway = config.network?.gateway ?? null;
  // The host's network stack is IPv4-only: with IPv6 off in the guest a
  // connect to an IPv6 address fails at once instead of hanging (and
  // localhost is only 127.0.0.1). Only with eth0 configured: outside a VM
  // (III_INIT_SKIP=network) this would be the host's network namespace.
  let ipv6Off = false;
  if (config.network && !skip.has("network")) {
    const start = performance.now();
    try {
      const done = disableIpv6(nodeNetPlatform(l));
      ipv6Off = done.length > 0;
      if (ipv6Off) clock.timings.push({ step: "ipv6", ms: round(performance.now() - start), status: "ok", detail: `disable_ipv6=1: ${done.join(", ")}` });
      else clock.skip("ipv6", "no IPv6 in this kernel", false);
    } catch (err) {
      clock.warn("ipv6", start, `disabling IPv6: ${(err as Error).message}`);
    }
  }
  if (config.hostname || config.network) {
    const start = performance.now();
    try {
      clock.run("etc", () => {
        mkdirSync("/etc", { recursive: true });
        replaceFile("/etc/hosts", hostsFile(config.hostname, gateway, { ipv6: !ipv6Off }));
        if (config.network) replaceFile("/etc/resolv.conf", resolvConf(config.network.dns));
      });
    } catch (err) {
      clock.warn("etc", start, `${(err as Error).message} (keeping the image's /etc/hosts and /etc/resolv.conf)`);
    }
  }

  // 6. lo (always; optional), then eth0 (required when configured).
  if (skip.has("network")) clock.skip("loopback", `${ENV.SKIP}`, false);
  else {
    const start = performance.now();
    try {
      const changed = loopbackUp(nodeNetPlatform(l));
      clock.timings.push({ step: "loopback", ms: round(performance.now() - start), status: "ok", detail: changed ? "up" : "already up" });
    } catch (err) {
      clock.warn("loopback", start, (err as Error).message);
    }
  }
  if (!config.network) clock.skip("network", `${ENV.IP} not set`, false);
  else if (skip.has("network")) clock.skip("network", `${ENV.SKIP}: eth0 needs a VM`, true);
  else {
    const net = config.network;
    clock.run("network", () => {
      try {
        configureInterface(nodeNetPlatform(l), "eth0", { ip: net.ip, netmask: net.netmask, gateway: net.gateway, mtu: net.mtu });
      } catch (err) {
        throw new InitError("NetworkSetup", "configure eth0", (err as Error).message, { cause: err });
      }
    });
  }

  // 7. rlimits.
  {
    const start = performance.now();
    try {
      l.setrlimit(RLIMIT_NOFILE, config.nofile, config.nofile);
      clock.timings.push({ step: "rlimit", ms: round(performance.now() - start), status: "ok" });
    } catch (err) {
      // Without CAP_SYS_RESOURCE (a host namespace, a restricted container)
      // the hard limit cannot be raised: use what is allowed and say so.
      const hard = (err as SysError).errnoName === "EPERM" ? l.getrlimit(RLIMIT_NOFILE).hard : -1;
      if (hard < 0) {
        throw new InitError("Rlimit", `setrlimit RLIMIT_NOFILE=${config.nofile}`, (err as Error).message, { cause: err });
      }
      const n = Math.min(config.nofile, hard);
      try {
        l.setrlimit(RLIMIT_NOFILE, n, hard);
      } catch (err2) {
        throw new InitError("Rlimit", `setrlimit RLIMIT_NOFILE=${n}`, (err2 as Error).message, { cause: err2 });
      }
      clock.warn("rlimit", start, `RLIMIT_NOFILE ${config.nofile} not permitted (EPERM), using ${n}`);
    }
  }

  // 8. Control channel (optional: without it the workload still runs).
  {
    const start = performance.now();
    try {
      rt.transport = await openControlTransport(config.control);
      if (rt.transport) {
        rt.channel = new ControlChannel(rt.transport.io);
        rt.channel.on("error", (err) => line(`control channel: ${err.message}`));
        clock.timings.push({ step: "control", ms: round(performance.now() - start), status: "ok", detail: rt.transport.description });
      } else if (config.control === "none") clock.skip("control", `${ENV.CONTROL}=none`, false);
      else clock.skip("control", "no iii.control port; workload output goes to the console", true);
    } catch (err) {
      clock.warn("control", start, `${(err as Error).message}; running without a control channel`);
    }
  }

  // 9. The workload's user and workdir.
  const user = clock.run("user", () => {
    try {
      const u = resolveUser(config.user);
      if (!statSync(config.workdir).isDirectory()) throw new Error(`workdir ${config.workdir} is not a directory`);
      // The VM runs one workload: it owns /run (sockets, pid files), as /tmp is open to all.
      if (u.uid !== 0) chownSync("/run", u.uid, u.gid);
      return u;
    } catch (err) {
      const detail =
        err instanceof UserResolveError ? err.message : (err as NodeJS.ErrnoException).code === "ENOENT" ? `workdir ${config.workdir} does not exist` : (err as Error).message;
      throw new InitError("WorkloadSetup", "workload user/workdir", detail, { cause: err });
    }
  });
  const workloadEnv = envForUser(config.workloadEnv, user, { TERM: config.workloadEnv.TERM ?? "linux" });

  // 10. Workload and control handling (listening before READY, so nothing the host sends is lost).
  const channel = rt.channel;
  const workload = new Workload(
    { argv: config.argv, env: workloadEnv, cwd: config.workdir, uid: user.uid, gid: user.gid },
    rt.cgroup,
    reaper,
    channel,
  );
  const startWorkload = async (): Promise<Promise<WorkloadExitMessage>> => {
    try {
      return (await workload.start()).done;
    } catch (err) {
      if (err instanceof SpawnError) throw new InitError("Spawn", "spawn workload", err.message, { cause: err });
      throw err;
    }
  };
  let pendingRestart: number | null = null;
  let shutdownGraceMs: number | null = null;
  let shutdownSignal: NodeJS.Signals = "SIGTERM";
  const requestShutdown = (graceMs: number, signal: NodeJS.Signals): void => {
    shutdownGraceMs ??= graceMs;
    shutdownSignal = signal;
    workload.stop(graceMs, signal);
  };
  if (channel) {
    const execs = new ExecServer(channel, { env: config.workloadEnv, cwd: config.workdir, user: config.user }, reaper, rt.cgroup);
    rt.execs = execs;
    channel.on("message", (m: Message) => {
      if (execs.handle(m)) return;
      switch (m.type) {
        case "PING":
          channel.send({ type: "PONG", stream: m.stream, nonce: m.nonce });
          return;
        case "SHUTDOWN":
          requestShutdown(m.graceMs, "SIGTERM");
          return;
        case "RESTART_WORKLOAD":
          if (shutdownGraceMs === null) {
            pendingRestart = m.graceMs;
            workload.stop(m.graceMs);
          }
          return;
        case "EXEC":
          channel.send({ type: "ERROR", stream: 0, code: "BAD_STREAM", message: "EXEC needs a non-zero stream id" });
          return;
        default:
          return;
      }
    });
    channel.on("invalid", ({ stream, error }) => {
      channel.send({ type: "ERROR", stream, code: "BAD_MESSAGE", message: error.message });
    });
  }
  for (const sig of ["SIGTERM", "SIGINT"] as const) {
    process.on(sig, () => requestShutdown(DEFAULT_SIGNAL_GRACE_MS, sig));
  }
  process.on("SIGHUP", () => workload.signal("SIGHUP"));

  channel?.send({
    type: "READY",
    stream: 0,
    protocol: PROTOCOL_VERSION,
    initVersion: INIT_VERSION,
    bootMs: clock.elapsedMs,
    timings: clock.timings,
  });
  let done = await startWorkload();
  if (shutdownGraceMs !== null) workload.stop(shutdownGraceMs, shutdownSignal);

  for (;;) {
    const exit = await done;
    if (pendingRestart !== null && shutdownGraceMs === null) {
      pendingRestart = null;
      done = await startWorkload();
      continue;
    }
    const how = exit.signal ? `signal ${exit.signal}` : `code ${exit.code}`;
    line(`workload exited with ${how}${exit.oomKilled ? " (OOM-killed)" : ""}; status ${exit.code}`);
    return finish(rt, exit.code);
  }
}
