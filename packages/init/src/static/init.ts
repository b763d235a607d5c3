// PID 1 under QuickJS (the static init, dist/init.krun): the boot steps on the
// engine's event loop (os.setReadHandler, os.signal, os.setTimeout) and
// iii:sys. Cgroups, network configuration, the env contract, the protocol and
// user resolution are portable code (src/portable, src/contract, src/protocol)
// that the host side's tests run under Node too.

import * as os from "os";
import * as std from "std";
import * as sys from "iii:sys";
import pkg from "../../package.json" with { type: "json" };
import { ContractError, decodeGuestEnv, ENV, mergeEnvSources, type GuestConfig } from "../contract/env.js";
import { capabilityMask } from "../contract/capabilities.js";
import { ExitCode, InitError } from "../errors.js";
import { resolveUserSpec, UserResolveError } from "../portable/users.js";
import { PROTOCOL_VERSION } from "../protocol/frame.js";
import type { BootStepTiming, WorkloadExitMessage } from "../protocol/messages.js";
import { utf8Encode } from "../portable/bytes.js";
import { Channel, Pump, pumpsDone } from "./channel.js";
import { ExecServer } from "./exec.js";
import { setupCgroup } from "./cgroup.js";
import { staticNetPlatform } from "./network.js";
import { configureInterface, disableIpv6, hostsFile, loopbackUp, resolvConf } from "../portable/network.js";
import type { WorkerCgroup } from "../portable/cgroup.js";
import { offlineCpus } from "../portable/cpus.js";
import {
  check,
  checkPair,
  decodeWaitStatus,
  exists,
  isDirectory,
  mkdirp,
  MS,
  PR_SET_CHILD_SUBREAPER,
  RB_AUTOBOOT,
  readFileOrThrow,
  readText,
  RLIMIT_NOFILE,
  SIGNALS,
  SysError,
  writeAll,
  writeText,
} from "./sys.js";

/** The package version (package.json, inlined by the bundler). */
export const INIT_VERSION: string = pkg.version;

/**
 * Kernel settings init makes before the first spawn (see the sysctl step). The last three concern the programs the
 * kernel itself starts (usermode helpers): they run as root with every capability in init's mount namespace, from
 * a path on the root filesystem the workload's root can write. No uevent helper (/sbin/hotplug), and a helper that
 * still runs (request-key: iii_sys.c also refuses the workload request_key(2)) gets no capability.
 */
const GUEST_SYSCTLS: ReadonlyArray<readonly [string, string]> = [
  ["user/max_user_namespaces", "0"],
  ["kernel/unprivileged_bpf_disabled", "1"],
  ["kernel/kptr_restrict", "1"],
  ["kernel/dmesg_restrict", "1"],
  // io_uring off for everyone, as Docker's default seccomp profile has it (a large, often-patched kernel surface;
  // libuv and others fall back to ordinary system calls)
  ["kernel/io_uring_disabled", "2"],
  ["kernel/hotplug", ""],
  ["kernel/usermodehelper/bset", "0 0"],
  ["kernel/usermodehelper/inheritable", "0 0"],
];

const PROC_PID_INIT_INO = 0xeffffffc;
const DEFAULT_SIGNAL_GRACE_MS = 10_000;
const INIT_OOM_SCORE_ADJ = -1000;
export const CHILD_OOM_SCORE_ADJ = 500;

export function line(message: string): void {
  writeAll(2, `iii-init: ${message}\n`);
}

const round = (ms: number): number => Math.round(ms * 100) / 100;

class BootClock {
  readonly timings: BootStepTiming[] = [];
  readonly t0 = os.now();
  run<T>(step: string, fn: () => T): T {
    const start = os.now();
    const result = fn();
    this.timings.push({ step, ms: round(os.now() - start), status: "ok" });
    return result;
  }
  skip(step: string, detail: string, announce: boolean): void {
    this.timings.push({ step, ms: 0, status: "skipped", detail });
    if (announce) line(`${step}: skipped (${detail})`);
  }
  warn(step: string, start: number, detail: string): void {
    this.timings.push({ step, ms: round(os.now() - start), status: "warn", detail });
    line(`warning: ${step}: ${detail}`);
  }
  get elapsedMs(): number {
    return round(os.now() - this.t0);
  }
}

const PSEUDO_FS = [
  { target: "/proc", fstype: "proc", source: "proc", flags: MS.NOSUID | MS.NODEV | MS.NOEXEC | MS.RELATIME, data: null },
  { target: "/sys", fstype: "sysfs", source: "sysfs", flags: MS.NOSUID | MS.NODEV | MS.NOEXEC | MS.RELATIME, data: null },
  { target: "/dev", fstype: "devtmpfs", source: "devtmpfs", flags: MS.NOSUID | MS.RELATIME, data: "mode=0755" },
  { target: "/dev/pts", fstype: "devpts", source: "devpts", flags: MS.NOSUID | MS.NOEXEC | MS.RELATIME, data: "newinstance,ptmxmode=0666,mode=0620,gid=5" },
  { target: "/dev/shm", fstype: "tmpfs", source: "shm", flags: MS.NOSUID | MS.NODEV | MS.RELATIME, data: "mode=1777,size=50%" },
  { target: "/tmp", fstype: "tmpfs", source: "tmpfs", flags: MS.NOSUID | MS.NODEV | MS.RELATIME, data: "mode=1777" },
  { target: "/run", fstype: "tmpfs", source: "tmpfs", flags: MS.NOSUID | MS.NODEV | MS.RELATIME, data: "mode=0755" },
] as const;

/** Mount point → file system type, from /proc/self/mounts (the first mount listed for a path). */
function mountTable(): Map<string, string> {
  const table = new Map<string, string>();
  for (const l of (readText("/proc/self/mounts") ?? "").split("\n")) {
    const f = l.split(" ");
    if (f[1] !== undefined && f[2] !== undefined && !table.has(f[1])) table.set(f[1], f[2]);
  }
  return table;
}

function mountPseudoFilesystems(clock: BootClock): void {
  // Read once, after /proc: every later target is checked against what was mounted before init mounted any of
  // them (each read is an open, reads and a close, a few ms under TCG).
  let mounted: Map<string, string> | null = null;
  for (const m of PSEUDO_FS) {
    clock.run(`mount:${m.target}`, () => {
      if (m.target !== "/proc" && (mounted ??= mountTable()).get(m.target) === m.fstype) return;
      if (m.target === "/proc" && exists("/proc/self/stat")) return;
      try {
        mkdirp(m.target);
        check(`mount ${m.target}`, sys.mount(m.source, m.target, m.fstype, m.flags, m.data));
      } catch (err) {
        throw new InitError("MountRoot", `mount ${m.target} (${m.fstype})`, (err as Error).message, { cause: err });
      }
    });
  }
  for (const [link, target] of [["/dev/fd", "/proc/self/fd"], ["/dev/stdin", "/proc/self/fd/0"], ["/dev/stdout", "/proc/self/fd/1"], ["/dev/stderr", "/proc/self/fd/2"]] as const) {
    if (os.lstat(link)[1] !== 0) os.symlink(target, link);
  }
}

/**
 * Writes `content` to `path` (temp file + rename), unless `path` is already a regular file with exactly that
 * content (every start after the first over the same writable layer): in a VM the root is FUSE behind
 * virtio-fs, where a stat and a read are a few round trips and a create, write and rename are twice as many.
 */
function replaceFile(path: string, content: string): void {
  const [st, err] = os.lstat(path);
  // Only a file as init writes it: root's, 0644, one link (an earlier run's workload may have changed its mode or owner).
  const asInitWrites = err === 0 && (st.mode & os.S_IFMT) === os.S_IFREG && (st.mode & 0o7777) === 0o644 && st.uid === 0 && st.nlink === 1;
  if (asInitWrites && st.size === utf8Encode(content).byteLength && readText(path) === content) return;
  const tmp = `${path}.iii-init.tmp`;
  writeText(tmp, content);
  check(`rename ${path}`, os.rename(tmp, path));
}

function isRootPidNamespace(): boolean {
  const [st, err] = os.stat("/proc/self/ns/pid");
  return err === 0 && st.ino === PROC_PID_INIT_INO;
}

interface Runtime {
  channel: Channel | null;
  cgroup: WorkerCgroup | null;
  execs: ExecServer | null;
  rebootAtEnd: boolean;
  children: Map<number, (status: number) => void>;
}

function reapAll(rt: Runtime): void {
  for (;;) {
    const [pid, status] = os.waitpid(-1, os.WNOHANG);
    if (pid <= 0) return;
    const waiter = rt.children.get(pid);
    if (waiter) {
      rt.children.delete(pid);
      waiter(status);
    }
  }
}

const sleep = (ms: number): Promise<void> => new Promise((r) => os.setTimeout(r, ms));

function hasChildren(): boolean {
  const pid = os.getpid();
  return (readText(`/proc/${pid}/task/${pid}/children`) ?? "").trim() !== "";
}

async function finish(rt: Runtime, exitCode: number): Promise<never> {
  rt.execs?.killAll();
  rt.cgroup?.killAll();
  if (os.getpid() === 1) {
    os.kill(-1, 9);
    const deadline = os.now() + 1000;
    while (os.now() < deadline) {
      reapAll(rt);
      if (!hasChildren()) break;
      await sleep(20);
    }
  }
  await rt.cgroup?.remove();
  if (rt.channel) {
    rt.channel.drain(2000);
    rt.channel.close();
  }
  sys.sync();
  if (rt.rebootAtEnd) {
    const r = sys.reboot(RB_AUTOBOOT);
    if (r < 0) line(`reboot: ${new SysError("reboot", r).message}`);
  }
  std.exit(exitCode);
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

export async function runInit(env: Record<string, string>): Promise<never> {
  const rt: Runtime = { channel: null, cgroup: null, execs: null, rebootAtEnd: false, children: new Map() };
  // QuickJS's event loop ends when no fd handler or timer is pending (signal
  // handlers do not count): one far-off timer keeps PID 1's loop alive.
  const keepAlive = (): void => void os.setTimeout(keepAlive, 2 ** 30);
  keepAlive();
  try {
    return await boot(rt, new BootClock(), env);
  } catch (err) {
    return fail(rt, err);
  }
}

function openControl(config: GuestConfig): { fd: number; description: string } | null {
  const spec = config.control;
  if (spec === "none") return null;
  if (spec?.startsWith("unix:")) {
    const path = spec.slice("unix:".length);
    return { fd: check(`connect ${path}`, sys.connectUnix(path)), description: spec };
  }
  const path = spec ?? findControlPort();
  if (path === null) return null;
  return { fd: check(`open ${path}`, sys.open(path, os.O_RDWR)), description: path };
}

/** /dev/vportNpM whose sysfs name is iii.control. */
function findControlPort(): string | null {
  const [ports, err] = os.readdir("/sys/class/virtio-ports");
  if (err !== 0) return null;
  for (const p of ports) {
    if ((readText(`/sys/class/virtio-ports/${p}/name`) ?? "").trim() === "iii.control") return `/dev/${p}`;
  }
  return null;
}

/** Brings online the CPUs the kernel left offline at boot (`maxcpus=1`, portable/cpus.ts). */
function onlineCpus(clock: BootClock): void {
  const start = os.now();
  const present = readText("/sys/devices/system/cpu/present");
  const online = readText("/sys/devices/system/cpu/online");
  if (present === null || online === null) {
    clock.warn("cpus", start, "cannot read /sys/devices/system/cpu/{present,online}");
    return;
  }
  const offline = offlineCpus(present, online);
  if (offline === null) {
    clock.warn("cpus", start, `unreadable CPU lists: present ${JSON.stringify(present.trim())}, online ${JSON.stringify(online.trim())}`);
    return;
  }
  if (offline.length === 0) {
    clock.skip("cpus", `all of ${present.trim()} online`, false);
    return;
  }
  const failed: string[] = [];
  for (const cpu of offline) {
    try {
      writeText(`/sys/devices/system/cpu/cpu${cpu}/online`, "1\n");
    } catch (err) {
      failed.push(`cpu${cpu}: ${(err as SysError).errnoName ?? (err as Error).message}`);
    }
  }
  if (failed.length > 0) clock.warn("cpus", start, `brought online ${offline.length - failed.length} of ${offline.length}: ${failed.join("; ")}`);
  else clock.timings.push({ step: "cpus", ms: round(os.now() - start), status: "ok", detail: `online ${(readText("/sys/devices/system/cpu/online") ?? "?").trim()}` });
}

async function boot(rt: Runtime, clock: BootClock, env: Record<string, string>): Promise<never> {
  const config = clock.run("env", () => {
    const file = env[ENV.ENV_FILE];
    let text: string | null = null;
    if (file) {
      try {
        text = readFileOrThrow(file);
      } catch (err) {
        throw new ContractError(ENV.ENV_FILE, file, `cannot read: ${(err as SysError).code ?? (err as Error).message}`);
      }
    }
    return decodeGuestEnv(mergeEnvSources(env, text));
  });
  const skip = new Set(config.skip);
  os.signal(SIGNALS.SIGCHLD!, () => reapAll(rt));

  mountPseudoFilesystems(clock);
  const pid1 = os.getpid() === 1;
  rt.rebootAtEnd = !config.noReboot && pid1 && isRootPidNamespace();
  if (!pid1) sys.prctl(PR_SET_CHILD_SUBREAPER, 1);

  {
    const start = os.now();
    try {
      writeText("/proc/self/oom_score_adj", `${INIT_OOM_SCORE_ADJ}\n`);
      clock.timings.push({ step: "oom", ms: round(os.now() - start), status: "ok", detail: `oom_score_adj ${INIT_OOM_SCORE_ADJ}` });
    } catch (err) {
      clock.warn("oom", start, `oom_score_adj ${INIT_OOM_SCORE_ADJ}: ${(err as SysError).errnoName ?? (err as Error).message}`);
    }
  }
  // The guest kernel as the workload sees it. No user namespaces: inside one, root of the workload would get the
  // capabilities init's confinement takes away (new mounts of cgroup2 or proc). No BPF for unprivileged users
  // (sticky once set), kernel addresses and the kernel log hidden from them. Only as the VM's own init: on a host
  // (the namespace tests) these sysctls would be the host's.
  if (pid1 && isRootPidNamespace()) {
    const start = os.now();
    const failed: string[] = [];
    for (const [path, value] of GUEST_SYSCTLS) {
      try {
        writeText(`/proc/sys/${path}`, `${value}\n`);
      } catch (err) {
        // ENOENT: this kernel has no such thing to turn off (no CONFIG_UEVENT_HELPER, no user namespaces).
        if ((err as SysError).errnoName !== "ENOENT") failed.push(`${path}: ${(err as SysError).errnoName ?? (err as Error).message}`);
      }
    }
    if (failed.length === 0) clock.timings.push({ step: "sysctl", ms: round(os.now() - start), status: "ok", detail: GUEST_SYSCTLS.map(([p, v]) => `${p}=${v}`).join(" ") });
    else clock.warn("sysctl", start, failed.join("; "));
    // The usermode helpers themselves: the sysctls above leave one that runs no capability, but it still runs the
    // workload's program as root in init's mount namespace and root cgroup (seen with --cap-add NET_ADMIN: a bridge
    // with STP on ran /sbin/bridge-stp, which set pids.max and cpu.max to max). Kernel threads look the program up
    // from a root they share with PID 1; that root becomes an empty file system (iii_sys.c rootKernelThreads).
    const helpersStart = os.now();
    const rooted = sys.rootKernelThreads();
    if (rooted < 0) clock.warn("helpers", helpersStart, `kernel threads keep the root filesystem: ${sys.errnoName(-rooted)}`);
    else clock.timings.push({ step: "helpers", ms: round(os.now() - helpersStart), status: "ok", detail: "kernel threads rooted in an empty file system" });
  }
  if (skip.has("cgroup")) clock.skip("cgroup", ENV.SKIP, true);
  else {
    const start = os.now();
    try {
      const inVm = isRootPidNamespace();
      const { cgroup, warnings } = setupCgroup(
        { memoryBytes: config.memoryBytes, pidsMax: config.pidsMax, cpuMax: config.cpuMax },
        { unique: !inVm, headroom: inVm },
      );
      rt.cgroup = cgroup;
      if (warnings.length > 0) clock.warn("cgroup", start, `${warnings.join("; ")} (applied: ${cgroup.description})`);
      else clock.timings.push({ step: "cgroup", ms: round(os.now() - start), status: "ok", detail: cgroup.description });
    } catch (err) {
      clock.warn("cgroup", start, `${(err as Error).message}; limits not applied`);
    }
  }
  const cgroup = rt.cgroup;

  if (config.mounts.length === 0) clock.skip("shares", `${ENV.MOUNTS} empty`, false);
  else if (skip.has("mounts")) clock.skip("shares", `${ENV.SKIP}: virtio-fs needs a VM`, true);
  else {
    for (const share of config.mounts) {
      clock.run(`share:${share.path}`, () => {
        try {
          mkdirp(share.path);
          check(`mount ${share.path}`, sys.mount(share.tag, share.path, "virtiofs", (share.readOnly ? MS.RDONLY : 0) | MS.RELATIME, null));
        } catch (err) {
          throw new InitError("MountShare", `mount share ${share.tag} at ${share.path}`, (err as Error).message, { cause: err });
        }
      });
    }
  }

  if (skip.has("hostname")) clock.skip("hostname", ENV.SKIP, true);
  else if (config.hostname) {
    const start = os.now();
    const r = sys.sethostname(config.hostname);
    if (r < 0) clock.warn("hostname", start, new SysError("sethostname", r).message);
    else clock.timings.push({ step: "hostname", ms: round(os.now() - start), status: "ok" });
  } else clock.skip("hostname", `${ENV.HOSTNAME} not set`, false);
  const gateway = config.network?.gateway ?? null;
  const net = staticNetPlatform;
  // IPv4-only host network: with IPv6 off a connect to an IPv6 address fails at
  // once (only with eth0 configured: outside a VM this is the host's namespace).
  let ipv6Off = false;
  if (config.network && !skip.has("network")) {
    const start = os.now();
    try {
      const done = disableIpv6(net);
      ipv6Off = done.length > 0;
      if (ipv6Off) clock.timings.push({ step: "ipv6", ms: round(os.now() - start), status: "ok", detail: `disable_ipv6=1: ${done.join(", ")}` });
      else clock.skip("ipv6", "no IPv6 in this kernel", false);
    } catch (err) {
      clock.warn("ipv6", start, `disabling IPv6: ${(err as Error).message}`);
    }
  }
  if (config.hostname || config.network) {
    const start = os.now();
    try {
      clock.run("etc", () => {
        mkdirp("/etc");
        replaceFile("/etc/hosts", hostsFile(config.hostname, gateway, { ipv6: !ipv6Off }));
        if (config.network) replaceFile("/etc/resolv.conf", resolvConf(config.network.dns));
      });
    } catch (err) {
      clock.warn("etc", start, `${(err as Error).message} (keeping the image's /etc/hosts and /etc/resolv.conf)`);
    }
  }
  if (skip.has("network")) clock.skip("loopback", ENV.SKIP, false);
  else {
    const start = os.now();
    try {
      const changed = loopbackUp(net);
      clock.timings.push({ step: "loopback", ms: round(os.now() - start), status: "ok", detail: changed ? "up" : "already up" });
    } catch (err) {
      clock.warn("loopback", start, (err as Error).message);
    }
  }
  if (!config.network) clock.skip("network", `${ENV.IP} not set`, false);
  else if (skip.has("network")) clock.skip("network", `${ENV.SKIP}: eth0 needs a VM`, true);
  else {
    const n = config.network;
    clock.run("network", () => {
      try {
        configureInterface(net, "eth0", { ip: n.ip, netmask: n.netmask, gateway: n.gateway, mtu: n.mtu });
      } catch (err) {
        throw new InitError("NetworkSetup", "configure eth0", (err as Error).message, { cause: err });
      }
    });
  }

  {
    const start = os.now();
    let r = sys.setrlimit(RLIMIT_NOFILE, config.nofile, config.nofile);
    if (r === 0) clock.timings.push({ step: "rlimit", ms: round(os.now() - start), status: "ok" });
    else {
      const cur = sys.getrlimit(RLIMIT_NOFILE);
      if (-r !== 1 || typeof cur === "number") throw new InitError("Rlimit", `setrlimit RLIMIT_NOFILE=${config.nofile}`, new SysError("setrlimit", r).message);
      const hard = cur[1] < 0 ? config.nofile : cur[1];
      const n = Math.min(config.nofile, hard);
      r = sys.setrlimit(RLIMIT_NOFILE, n, hard);
      if (r < 0) throw new InitError("Rlimit", `setrlimit RLIMIT_NOFILE=${n}`, new SysError("setrlimit", r).message);
      clock.warn("rlimit", start, `RLIMIT_NOFILE ${config.nofile} not permitted (EPERM), using ${n}`);
    }
  }

  // Last before the workload: with other CPUs online, the kernel patching its own code for the steps above (a CPU
  // quota turns on CFS bandwidth's static key) could kill it under parallel TCG (portable/cpus.ts).
  if (pid1 && isRootPidNamespace()) onlineCpus(clock);

  {
    const start = os.now();
    try {
      const control = openControl(config);
      if (control) {
        rt.channel = new Channel(control.fd);
        clock.timings.push({ step: "control", ms: round(os.now() - start), status: "ok", detail: control.description });
      } else if (config.control === "none") clock.skip("control", `${ENV.CONTROL}=none`, false);
      else clock.skip("control", "no iii.control port; workload output goes to the console", true);
    } catch (err) {
      clock.warn("control", start, `${(err as Error).message}; running without a control channel`);
    }
  }

  const user = clock.run("user", () => {
    try {
      const u = resolveUserSpec(config.user, readText("/etc/passwd") ?? "", () => readText("/etc/group") ?? "");
      const dir = isDirectory(config.workdir);
      if (dir === null) throw new Error(`workdir ${config.workdir} does not exist`);
      if (!dir) throw new Error(`workdir ${config.workdir} is not a directory`);
      if (u.uid !== 0) check("chown /run", sys.chown("/run", u.uid, u.gid));
      return u;
    } catch (err) {
      throw new InitError("WorkloadSetup", "workload user/workdir", (err as Error).message, { cause: err instanceof UserResolveError ? undefined : err });
    }
  });
  const workloadEnv: Record<string, string> = { ...config.workloadEnv };
  if (!workloadEnv.HOME || workloadEnv.HOME === "/") workloadEnv.HOME = user.home;
  if (user.name && !workloadEnv.USER) workloadEnv.USER = user.name;
  workloadEnv.TERM ??= "linux";

  const channel = rt.channel;
  let generation = -1;
  let current: { pid: number; requested: boolean; escalated: boolean; escalation: unknown } | null = null;
  let pendingRestart: number | null = null;
  let shutdownGraceMs: number | null = null;
  let shutdownSignal = "SIGTERM";

  const killGroup = (pid: number, sig: number): boolean => os.kill(-pid, sig) === 0;

  const start = (): Promise<WorkloadExitMessage> => {
    generation += 1;
    const gen = generation;
    let out = -1;
    let err = -1;
    const fds: number[] = [];
    if (channel) {
      const [or, ow] = checkPair("pipe", sys.pipe());
      const [er, ew] = checkPair("pipe", sys.pipe());
      fds.push(or, er);
      out = ow;
      err = ew;
    }
    const devnull = sys.open("/dev/null", os.O_RDONLY);
    const oomBaseline = cgroup?.workload.oomKills() ?? 0;
    const spawn = (): number | [number, number] =>
      sys.spawn(config.argv, Object.entries(workloadEnv).map(([k, v]) => `${k}=${v}`), {
        cwd: config.workdir,
        uid: user.uid,
        gid: user.gid,
        groups: [user.gid],
        setsid: true,
        stdin: devnull,
        stdout: channel ? out : 1,
        stderr: channel ? err : 2,
        oomScoreAdj: CHILD_OOM_SCORE_ADJ,
        // The child joins the workload's leaf itself: init never enters it.
        cgroupProcs: cgroup?.workload.procsFiles() ?? [],
        // and it cannot lift those limits (nor can its execs): iii_sys.c spawn_child
        confine: true,
        capabilities: capabilityMask(config.capabilities),
      });
    const r = spawn();
    if (devnull >= 0) os.close(devnull);
    if (channel) {
      os.close(out);
      os.close(err);
    }
    if (typeof r !== "number" || r < 0) {
      for (const fd of fds) os.close(fd);
      const e = typeof r === "number" ? r : r[0];
      const where = typeof r !== "number" && r[1] === 1 ? "joining its cgroup: " : "";
      throw new InitError("Spawn", "spawn workload", `${config.argv[0]}: ${where}${sys.errnoName(e)} (${sys.strerror(e)})`);
    }
    const pid = r;
    const proc = { pid, requested: false, escalated: false, escalation: null as unknown };
    current = proc;
    channel?.send({ type: "WORKLOAD_STARTED", stream: 0, pid, generation: gen });
    const pumps = fds.map((fd, i) => new Pump(fd, 0, i === 0 ? "STDOUT" : "STDERR", channel));
    return new Promise<WorkloadExitMessage>((resolve) => {
      rt.children.set(pid, async (status) => {
        const exit = decodeWaitStatus(status);
        let lastKillAt: number | null = null;
        if (!proc.requested) {
          killGroup(pid, 9);
          lastKillAt = os.now();
        }
        while (killGroup(pid, 0)) {
          if (lastKillAt !== null && os.now() - lastKillAt > 5000) break;
          reapAll(rt);
          await sleep(20);
        }
        if (proc.escalation) os.clearTimeout(proc.escalation);
        if (cgroup) {
          cgroup.workload.kill();
          await cgroup.workload.waitEmpty(5000);
        }
        await pumpsDone(pumps, 2000);
        for (const p of pumps) p.end();
        current = null;
        const message: WorkloadExitMessage = {
          type: "WORKLOAD_EXIT",
          stream: 0,
          ...exit,
          timedOut: false,
          generation: gen,
          oomKilled: (cgroup?.workload.oomKills() ?? 0) > oomBaseline,
          requested: proc.requested,
          escalated: proc.escalated,
        };
        channel?.send(message);
        resolve(message);
      });
      reapAll(rt);
    });
  };

  const stop = (graceMs: number, signal = "SIGTERM"): void => {
    const proc = current;
    if (!proc) return;
    proc.requested = true;
    killGroup(proc.pid, SIGNALS[signal] ?? 15);
    if (proc.escalation) return;
    proc.escalation = os.setTimeout(() => {
      proc.escalated = true;
      killGroup(proc.pid, 9);
      cgroup?.workload.kill();
    }, Math.max(0, graceMs));
  };
  const requestShutdown = (graceMs: number, signal: string): void => {
    shutdownGraceMs ??= graceMs;
    shutdownSignal = signal;
    stop(graceMs, signal);
  };

  if (channel) {
    const execs = new ExecServer(
      channel,
      { env: config.workloadEnv, cwd: config.workdir, user: config.user, capabilities: capabilityMask(config.capabilities) },
      (pid, onExit) => {
        rt.children.set(pid, onExit);
      },
      cgroup,
    );
    rt.execs = execs;
    channel.onMessage = (m) => {
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
            stop(m.graceMs);
          }
          return;
        case "EXEC":
          channel.send({ type: "ERROR", stream: 0, code: "BAD_STREAM", message: "EXEC needs a non-zero stream id" });
          return;
        default:
          return;
      }
    };
  }
  os.signal(SIGNALS.SIGTERM!, () => requestShutdown(DEFAULT_SIGNAL_GRACE_MS, "SIGTERM"));
  os.signal(SIGNALS.SIGINT!, () => requestShutdown(DEFAULT_SIGNAL_GRACE_MS, "SIGINT"));
  os.signal(SIGNALS.SIGHUP!, () => {
    if (current) killGroup(current.pid, SIGNALS.SIGHUP!);
  });
  os.signal(SIGNALS.SIGPIPE!, undefined); // ignored: a closed pipe is EPIPE, not death

  channel?.send({ type: "READY", stream: 0, protocol: PROTOCOL_VERSION, initVersion: INIT_VERSION, bootMs: clock.elapsedMs, timings: clock.timings });
  let done = start();
  if (shutdownGraceMs !== null) stop(shutdownGraceMs, shutdownSignal);
  for (;;) {
    const exit = await done;
    if (pendingRestart !== null && shutdownGraceMs === null) {
      pendingRestart = null;
      done = start();
      continue;
    }
    const how = exit.signal ? `signal ${exit.signal}` : `code ${exit.code}`;
    line(`workload exited with ${how}${exit.oomKilled ? " (OOM-killed)" : ""}; status ${exit.code}`);
    return finish(rt, exit.code);
  }
}
