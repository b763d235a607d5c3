import { spawn, type ChildProcess } from "node:child_process";
import { appendFileSync, closeSync, constants as fsConstants, existsSync, mkdirSync, openSync, readFileSync, statSync, truncateSync } from "node:fs";
import { chmod, mkdir, rm } from "node:fs/promises";
import { dirname, join } from "node:path";
import { IiiError } from "../errors.js";
import { findQemu, findVirtiofsd } from "../host/binaries.js";
import { processStartTime } from "../host/process-identity.js";
import { which } from "../host/which.js";
import { resolveAccel, type AccelChoice } from "./accel.js";
import { consoleTail, readTail, waitForLine } from "./console-log.js";
import { listenUnixSocket } from "./listen-socket.js";
import { hostTscKhz } from "./host-clock.js";
import { buildVmCommands, validateTag } from "./qemu-argv.js";
import { createCpuCgroup, type CpuCgroup } from "../host/cpu-cgroup.js";
import { leaseQemuUid, type QemuUidLease } from "../host/qemu-uid-lease.js";
import { probeDropSyntax, QEMU_UID_COUNT, qemuUidBase, type QemuConfinement, type QemuDropSyntax } from "./qemu-confine.js";
import { QmpClient, shutdownReason } from "./qmp.js";
import type { VirtioDeviceState, VirtioQueueRing, VmExit, VmmFactory, VmmOptions, VmProcess, VmShare, Vmm } from "./types.js";

export interface QemuVmmOptions extends VmmOptions {
  virtiofsdCache?: "auto" | "always" | "none";
  /** TCG boot tuning on the kernel command line (TCG_BOOT_TUNING); default true. */
  tcgTuning?: boolean;
  /** How long start() waits for each virtiofsd socket and for QMP. Default 10 s. */
  startTimeoutMs?: number;
}

/** Milestones of one start, in ms since start() was called; the boot benchmark prints them. */
export interface QemuVmmTimings {
  virtiofsdReadyMs?: number;
  qemuSpawnedMs?: number;
  qmpReadyMs?: number;
  exitedMs?: number;
}

/** Unix socket paths are limited to 107 bytes (sockaddr_un.sun_path). */
const MAX_SOCKET_PATH = 107;
/**
 * QEMU's and virtiofsd's stderr logs hold only their own messages, but a guest driving its devices may be able to
 * provoke one per request: a log past this is emptied (with a line saying so), checked every LOG_CHECK_MS.
 */
export const PROCESS_LOG_CAP_BYTES = 4 * 1024 * 1024;
const LOG_CHECK_MS = 5_000;

interface Tracked {
  record: VmProcess;
  child: ChildProcess;
  exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
  done: boolean;
  /** How it ended, once it has. */
  exit?: { code: number | null; signal: NodeJS.Signals | null };
  logPath: string;
}

/**
 * The qemu adapter: `qemu-system-x86_64 -M microvm` booting the libkrunfw PVH kernel, one virtiofsd per
 * share, console to a file, `iii.control` virtserialport, `-netdev stream` to the network stack, QMP for the
 * shutdown reason. Owns every process it spawns: they are killed on stop()/cleanup() and listed by
 * processes() (pid + start time) for a supervisor's record.
 */
export class QemuVmm implements Vmm {
  readonly kind = "qemu" as const;
  readonly config: QemuVmmOptions;
  readonly timings: QemuVmmTimings = {};
  private accelChoice: AccelChoice | undefined;
  private qemuBin: string | undefined;
  private virtiofsdBin: string | undefined;
  private argv: string[] | undefined;
  private daemonCommands: Array<{ share: VmShare; socketPath: string; command: string[]; fdCommand: string[] }> = [];
  /** startEarly(): this process's descriptors of the shares' listening sockets, until their virtiofsd's have them. */
  private listenFds: number[] = [];
  private early = false;
  private daemons: Tracked[] = [];
  private qemu: Tracked | undefined;
  /** Kills QEMU if this process dies without stopping it (watchQemuForParentDeath). */
  private qemuWatch: ChildProcess | undefined;
  private logCheck: NodeJS.Timeout | undefined;
  private qmp: QmpClient | undefined;
  private exitPromise: Promise<VmExit> | undefined;
  private exitInfo: VmExit | undefined;
  private failureError: IiiError | undefined;
  private failureReason: string | undefined;
  private startedAt = 0;
  private consoleOffset = 0;
  private stopping = false;
  private prepared = false;
  private cpuGroup: CpuCgroup | undefined;
  private uidLease: QemuUidLease | undefined;
  confinementSummary: string | undefined;

  constructor(config: QemuVmmOptions) {
    this.config = config;
  }

  get qmpSocketPath(): string {
    return join(this.config.runDir, "qmp.sock");
  }

  /** The accel in use (after prepare()). */
  get accel(): AccelChoice {
    if (!this.accelChoice) throw new IiiError("Internal", "QemuVmm.prepare() has not run");
    return this.accelChoice;
  }

  /** `[qemu binary, ...argv]` (after prepare()). */
  get qemuCommand(): string[] {
    if (!this.argv || !this.qemuBin) throw new IiiError("Internal", "QemuVmm.prepare() has not run");
    return [this.qemuBin, ...this.argv];
  }

  get virtiofsdCommands(): string[][] {
    return this.daemonCommands.map((d) => d.command);
  }

  /** The failure the adapter detected (KvmUnavailable, VmBootFailed), if any. */
  get failure(): IiiError | undefined {
    return this.failureError;
  }

  /** The VM's end, once it has ended. */
  get exit(): VmExit | undefined {
    return this.exitInfo;
  }

  async prepare(): Promise<void> {
    if (this.prepared) return;
    try {
      await this.prepareOnce();
    } catch (error) {
      // A VM that will not start holds no uid: the lease goes back at once, not when this process ends.
      await this.uidLease?.release();
      this.uidLease = undefined;
      throw error;
    }
  }

  private async prepareOnce(): Promise<void> {
    const env = this.config.hostEnv ?? process.env;
    const { config } = this;
    this.qemuBin = config.qemuPath ?? findQemu(env);
    if (!this.qemuBin || !existsSync(this.qemuBin)) {
      throw new IiiError("QemuNotFound", `${this.qemuBin ?? "qemu-system-x86_64"} not found (apt install qemu-system-x86, or set III_QEMU_BIN)`);
    }
    this.virtiofsdBin = config.virtiofsdPath ?? findVirtiofsd(env);
    if (!this.virtiofsdBin || !existsSync(this.virtiofsdBin)) {
      throw new IiiError("VirtiofsdNotFound", `${this.virtiofsdBin ?? "virtiofsd"} not found (apt install qemu-system-common, or set III_VIRTIOFSD_BIN)`);
    }
    this.accelChoice = config.accelChoice ?? (config.accel ? { accel: config.accel, reason: "chosen by the caller" } : resolveAccel(env));
    if (!existsSync(config.kernelPath)) throw new IiiError("FirmwareNotFound", `kernel ${config.kernelPath} does not exist`);
    // After startEarly() the shares' directories (mountpoints still being mounted) are checked by start().
    if (!this.early) this.checkShareDirs();
    const shares = [config.root, ...(config.shares ?? [])];
    const tags = new Set<string>();
    for (const share of shares) {
      validateTag(share.tag);
      if (tags.has(share.tag)) throw new IiiError("InvalidOption", `virtio-fs tag ${share.tag} is used twice`);
      tags.add(share.tag);
    }
    if (shares.some((s) => s.readOnly) && !which("unshare", ["/usr/bin", "/bin"], env)) {
      throw new IiiError("InvalidOption", "read-only shares need unshare(1) (apt install util-linux)");
    }
    try {
      mkdirSync(config.runDir, { recursive: true });
      mkdirSync(dirname(config.consoleLogPath), { recursive: true });
    } catch (error) {
      throw new IiiError("HomeUnwritable", `cannot create ${config.runDir}: ${(error as Error).message}`, { cause: error });
    }
    const accel = this.accelChoice.accel;
    const confine = await this.confinement(env);
    this.confinementSummary = !confine
      ? "QEMU unconfined (III_QEMU_CONFINE=0)"
      : confine.user
        ? `QEMU confined: seccomp, uid/gid ${confine.user.uid}, empty chroot`
        : "QEMU confined: seccomp only (not root: no uid drop or chroot)";
    let dropSyntax: QemuDropSyntax | undefined;
    if (confine?.user) {
      try {
        dropSyntax = await probeDropSyntax(this.qemuBin, config.qemuProbeCacheDir);
      } catch (error) {
        throw new IiiError("QemuNotFound", `${this.qemuBin} -help failed: ${(error as Error).message}`, { cause: error });
      }
    }
    let commands: ReturnType<typeof buildVmCommands>;
    try {
      commands = buildVmCommands(config, {
        accel,
        virtiofsdPath: this.virtiofsdBin,
        ...(accel === "tcg" ? { tscKhz: config.tscKhz ?? hostTscKhz() } : {}),
        ...(confine ? { confine } : {}),
        ...(dropSyntax ? { dropSyntax } : {}),
      });
    } catch (error) {
      if (error instanceof RangeError) throw new IiiError("InvalidOption", error.message, { cause: error });
      throw error;
    }
    this.daemonCommands = commands.daemons;
    const sockets = [this.qmpSocketPath, ...this.daemonCommands.map((d) => d.socketPath), config.control?.socketPath, config.network?.socketPath];
    for (const path of sockets) {
      if (path && Buffer.byteLength(path) > MAX_SOCKET_PATH) {
        throw new IiiError("InvalidOption", `unix socket path ${path} is longer than ${MAX_SOCKET_PATH} bytes; use a shorter III_HOME or run dir`);
      }
    }
    if (config.cpuQuota && !this.cpuGroup) this.cpuGroup = await createCpuCgroup(config.cpuQuota.cgroupName, config.cpuQuota.cpus);
    this.argv = commands.argv;
    this.prepared = true;
  }

  /**
   * How QEMU is confined once the VM is set up (qemu-confine.ts): always seccomp; as root also its own uid/gid,
   * leased host-wide (no other live QEMU runs as it, whatever its III_HOME), and an empty chroot, made here
   * (`<runDir>/qemu-root`, read-only, emptied first). `III_QEMU_CONFINE=0` in hostEnv turns all of it off
   * (debugging only).
   */
  private async confinement(env: NodeJS.ProcessEnv): Promise<QemuConfinement | undefined> {
    if (env.III_QEMU_CONFINE === "0") return undefined;
    if (process.geteuid?.() !== 0) return { seccomp: true };
    let base: number;
    try {
      base = qemuUidBase(env);
    } catch (error) {
      throw new IiiError("InvalidOption", (error as Error).message, { cause: error });
    }
    this.uidLease ??= await leaseQemuUid(base, QEMU_UID_COUNT);
    const id = this.uidLease.uid;
    const chrootDir = join(this.config.runDir, "qemu-root");
    try {
      await rm(chrootDir, { recursive: true, force: true });
      await mkdir(chrootDir);
      await chmod(chrootDir, 0o555);
    } catch (error) {
      throw new IiiError("HomeUnwritable", `cannot create ${chrootDir}: ${(error as Error).message}`, { cause: error });
    }
    return { seccomp: true, user: { uid: id, gid: id }, chrootDir };
  }

  /**
   * Spawns QEMU before its shares are served; start() then spawns the virtiofsd's. Each share's vhost-user
   * socket is made listening here first (listenUnixSocket), so QEMU's connect waits in the backlog: QEMU's own
   * start-up (libraries, TCG, the kernel image: ≈100 ms of its ≈170 ms to QMP under TCG here) runs beside the
   * virtiofsd's instead of after them, and QEMU blocks in the vhost-user handshake until they answer. The
   * control and network sockets QEMU dials must be listening already; the shares' directories are checked by
   * start(). A worker's supervisor calls this beside the FUSE mount and start() once the mount is up
   * (supervisor/phases: qemu, vmm).
   */
  async startEarly(): Promise<void> {
    if (this.qemu || this.prepared) throw new IiiError("Internal", `VM ${this.config.name}: startEarly() comes first`);
    this.early = true;
    await this.prepare();
    this.startedAt = performance.now();
    try {
      await rm(this.qmpSocketPath, { force: true });
      for (const daemon of this.daemonCommands) this.listenFds.push(listenUnixSocket(daemon.socketPath));
      this.spawnQemu();
      // Before start() serves the shares: the guest cannot run a cycle before QEMU is in its cgroup.
      await this.placeQemu();
    } catch (error) {
      await this.killAll(1_000);
      throw error;
    }
  }

  async start(): Promise<void> {
    if (this.early) return this.serveShares();
    await this.prepare();
    if (this.qemu) throw new IiiError("Internal", `VM ${this.config.name} was already started`);
    this.startedAt = performance.now();
    const timeoutMs = this.config.startTimeoutMs ?? 10_000;
    try {
      // Stale sockets from a killed run would make virtiofsd fail to bind or QMP connect to nothing.
      for (const path of [this.qmpSocketPath, ...this.daemonCommands.map((d) => d.socketPath)]) await rm(path, { force: true });
      for (const daemon of this.daemonCommands) {
        const tracked = this.spawnTracked("virtiofsd", daemon.command, join(this.config.runDir, `virtiofsd-${daemon.share.tag}.log`), daemon.share.tag);
        this.daemons.push(tracked);
      }
      this.config.onSpawned?.();
      await Promise.all(this.daemons.map((d, i) => this.waitForSocket(d, this.daemonCommands[i]!.socketPath, timeoutMs)));
      this.timings.virtiofsdReadyMs = this.elapsed();

      // With a host CPU quota, QEMU starts paused (-S) and runs once it is in its group: the virtiofsd's already
      // serve, so nothing else holds the guest back before placement (startEarly's path has the handshake).
      const paused = this.cpuGroup !== undefined;
      this.spawnQemu(paused ? ["-S"] : []);
      await this.placeQemu();
      await this.connectQmp(timeoutMs);
      if (paused) await this.qmp!.execute("cont");
    } catch (error) {
      await this.killAll(1_000);
      throw error;
    }
  }

  /** start() after startEarly(): the virtiofsd's take over the listening sockets QEMU is waiting on; then QMP. */
  private async serveShares(): Promise<void> {
    if (this.daemons.length > 0) throw new IiiError("Internal", `VM ${this.config.name} was already started`);
    const timeoutMs = this.config.startTimeoutMs ?? 10_000;
    try {
      this.checkShareDirs();
      if (this.qemu!.done) throw await this.earlyFailure();
      this.daemonCommands.forEach((daemon, i) => {
        const logPath = join(this.config.runDir, `virtiofsd-${daemon.share.tag}.log`);
        this.daemons.push(this.spawnTracked("virtiofsd", daemon.fdCommand, logPath, daemon.share.tag, this.listenFds[i]));
      });
      this.config.onSpawned?.();
      this.closeListenFds();
      this.timings.virtiofsdReadyMs = this.elapsed();
      await this.connectQmp(timeoutMs);
    } catch (error) {
      await this.killAll(1_000);
      throw error;
    }
  }

  private checkShareDirs(): void {
    const { config } = this;
    if (!isDirectory(config.root.hostDir)) throw new IiiError("RootfsNotFound", `root filesystem ${config.root.hostDir} is not a directory`);
    for (const share of config.shares ?? []) {
      if (!isDirectory(share.hostDir)) throw new IiiError("InvalidOption", `shared directory ${share.hostDir} (${share.tag}) is not a directory`);
    }
  }

  /** QEMU ended before QMP answered, after startEarly(): a virtiofsd that failed first is the reason given. */
  private async earlyFailure(): Promise<IiiError> {
    await Promise.race([Promise.all(this.daemons.map((d) => d.exited)), delay(200)]);
    const failed = this.daemons.find((d) => d.exit && (d.exit.signal !== null || d.exit.code !== 0));
    if (failed) return new IiiError("VmBootFailed", `VM ${this.config.name}: virtiofsd for ${failed.record.tag} exited: ${lastLines(readTail(failed.logPath), 5) || "no output"}`);
    return this.startFailure("QEMU exited during start-up");
  }

  private async placeQemu(): Promise<void> {
    if (this.cpuGroup && this.qemu) await this.cpuGroup.place(this.qemu.record.pid);
  }

  private spawnQemu(extraArgs: string[] = []): void {
    // With consoleAppend the log holds earlier runs: this run's lines start at the current size.
    this.consoleOffset = this.config.consoleAppend ? fileSize(this.config.consoleLogPath) : 0;
    this.qemu = this.spawnTracked("qemu", [...this.qemuCommand, ...extraArgs], join(this.config.runDir, "qemu.log"));
    this.qemuWatch = watchQemuForParentDeath(this.qemu.record, join(this.config.runDir, "qemu-watch.log"));
    // Until its setuid QEMU runs as root: its lease must outlive this process if this process dies first.
    this.uidLease?.holdFor(this.qemu.record.pid);
    this.timings.qemuSpawnedMs = this.elapsed();
    this.exitPromise = this.watchExit(this.qemu);
    this.config.onSpawned?.();
  }

  private async connectQmp(timeoutMs: number): Promise<void> {
    const qemu = this.qemu!;
    try {
      // The greeting, too, within the time: after startEarly() QMP's socket exists long before QEMU answers.
      let timer: NodeJS.Timeout | undefined;
      const timeout = new Promise<never>((_, reject) => {
        timer = setTimeout(() => reject(new Error(`no greeting within ${timeoutMs} ms`)), timeoutMs);
      });
      const connecting = QmpClient.connect(this.qmpSocketPath, timeoutMs, () => !qemu.done);
      try {
        this.qmp = await Promise.race([connecting, timeout]);
      } finally {
        clearTimeout(timer);
        void connecting.then((client) => client !== this.qmp && client.close(), () => {});
      }
    } catch (error) {
      await Promise.race([qemu.exited, delay(200)]);
      if (qemu.done && this.early) throw await this.earlyFailure();
      throw qemu.done ? this.startFailure("QEMU exited during start-up") : this.startFailure(`QMP did not answer: ${(error as Error).message}`);
    }
    this.timings.qmpReadyMs = this.elapsed();
    this.qmp.onEvent((event) => {
      // A KVM "internal error" pauses the VM instead of ending QEMU (vm_stop(RUN_STATE_INTERNAL_ERROR)).
      if (event.event === "STOP" && !this.stopping) void this.checkInternalError();
    });
  }

  /**
   * Closes this process's copies of the early listening sockets. Before the virtiofsd's have them, that ends
   * the sockets and resets QEMU's waiting connection, so a QEMU blocked in the vhost-user handshake exits.
   */
  private closeListenFds(): void {
    for (const fd of this.listenFds.splice(0)) {
      try {
        closeSync(fd);
      } catch {
        // already closed
      }
    }
  }

  /**
   * Waits for a console line (e.g. the first line of a test init); VmBootFailed with the console tail when
   * the VM ends or the time runs out first.
   */
  async waitForConsole(match: RegExp | ((line: string) => boolean), timeoutMs = 60_000): Promise<{ line: string; atMs: number }> {
    try {
      const { line } = await waitForLine(this.config.consoleLogPath, match, {
        timeoutMs,
        fromOffset: this.consoleOffset,
        stop: () => (this.failureError ? this.failureError.message : this.qemu?.done ? "ended" : undefined),
      });
      return { line, atMs: this.elapsed() };
    } catch (error) {
      if (this.failureError) throw this.failureError;
      if (this.qemu?.done && this.exitPromise) {
        const exit = await this.exitPromise;
        if (this.failureError) throw this.failureError;
        throw this.bootFailure(`the VM ended (${exit.reason}) before the expected console line`);
      }
      throw this.bootFailure((error as Error).message);
    }
  }

  wait(): Promise<VmExit> {
    if (!this.exitPromise) return Promise.reject(new IiiError("VmNotRunning", `VM ${this.config.name} was not started`));
    return this.exitPromise;
  }

  async vcpuRegisters(): Promise<string> {
    if (!this.qmp || !this.qemu || this.qemu.done) throw new IiiError("VmNotRunning", `VM ${this.config.name} is not running`);
    const text = await this.qmp.execute("human-monitor-command", { "command-line": "info registers -a" });
    return typeof text === "string" ? text : JSON.stringify(text);
  }

  async virtioState(): Promise<VirtioDeviceState[]> {
    const qmp = this.qmp;
    if (!qmp || !this.qemu || this.qemu.done) throw new IiiError("VmNotRunning", `VM ${this.config.name} is not running`);
    const readU16 = async (address: number, count: number): Promise<number[]> => {
      const text = (await qmp.execute("human-monitor-command", { "command-line": `xp /${count}hx 0x${address.toString(16)}` })) as string;
      return [...text.matchAll(/0x([0-9a-f]{4})\b/g)].map((m) => parseInt(m[1]!, 16)).slice(0, count);
    };
    const devices = (await qmp.execute("x-query-virtio")) as Array<{ path: string; name: string }>;
    const states: VirtioDeviceState[] = [];
    for (const device of devices) {
      const state: VirtioDeviceState = { path: device.path, name: device.name, isr: -1, queues: [] };
      states.push(state);
      try {
        const status = (await qmp.execute("x-query-virtio-status", { path: device.path })) as {
          isr: number;
          "num-vqs": number;
          "vhost-dev"?: unknown;
          "guest-features"?: { transports?: string[] };
        };
        state.isr = status.isr;
        state.eventIdx = (status["guest-features"]?.transports ?? []).some((t) => t.startsWith("VIRTIO_RING_F_EVENT_IDX"));
        for (let queue = 0; queue < status["num-vqs"]; queue++) {
          const vq = (await qmp.execute(status["vhost-dev"] ? "x-query-virtio-vhost-queue-status" : "x-query-virtio-queue-status", { path: device.path, queue })) as Record<string, number>;
          const size = vq["num"] ?? vq["vring-num"] ?? 0;
          const avail = vq["avail-phys"] ?? vq["vring-avail"] ?? 0;
          const used = vq["used-phys"] ?? vq["vring-used"] ?? 0;
          if (!size || !avail || !used) continue;
          const [availFlags = -1, availIdx = -1] = await readU16(avail, 2);
          const [usedEvent = -1] = await readU16(avail + 4 + 2 * size, 1);
          const [usedFlags = -1, usedIdx = -1] = await readU16(used, 2);
          const [availEvent = -1] = await readU16(used + 4 + 8 * size, 1);
          // Queues the driver never used (most of virtio-serial's 64) say nothing.
          if (availIdx === 0 && usedIdx === 0) continue;
          const ring: VirtioQueueRing = { queue, size, availIdx, usedEvent, usedIdx, availEvent, availFlags, usedFlags };
          if (!status["vhost-dev"]) ring.device = { lastAvailIdx: vq["last-avail-idx"]!, usedIdx: vq["used-idx"]!, signalledUsed: vq["signalled-used"]!, inuse: vq["inuse"]! };
          state.queues.push(ring);
        }
      } catch (error) {
        state.error = (error as Error).message;
      }
    }
    return states;
  }

  async stop(options: { timeoutMs?: number } = {}): Promise<VmExit> {
    this.closeListenFds();
    if (!this.qemu || !this.exitPromise) {
      await this.killAll(1_000);
      return { reason: "not-started", exitCode: null, signal: null, events: [], uptimeMs: 0 };
    }
    this.stopping = true;
    const timeoutMs = options.timeoutMs ?? 5_000;
    if (!this.qemu.done) {
      // QMP quit ends QEMU at once (reason host-qmp-quit); the guest is expected to have been asked to shut
      // down over the control channel by whoever calls stop().
      await Promise.race([this.qmp?.execute("quit").catch(() => undefined), delay(500)]);
      if (!(await settlesWithin(this.qemu.exited, timeoutMs))) this.signal(this.qemu, "SIGTERM");
      if (!(await settlesWithin(this.qemu.exited, 1_000))) this.signal(this.qemu, "SIGKILL");
    }
    const exit = await this.exitPromise;
    await this.killAll(1_000);
    return exit;
  }

  async cleanup(): Promise<void> {
    if (this.logCheck) clearInterval(this.logCheck);
    this.logCheck = undefined;
    if (this.qemu && !this.qemu.done) await this.stop({ timeoutMs: 2_000 });
    await this.killAll(1_000);
    // QEMU has ended: its watch ends too (its TERM handler finds no QEMU to kill).
    this.qemuWatch?.kill("SIGTERM");
    this.qemuWatch = undefined;
    this.qmp?.close();
    const created = [this.qmpSocketPath, ...this.daemonCommands.map((d) => d.socketPath)];
    if (this.config.control?.mode === "server") created.push(this.config.control.socketPath);
    await Promise.all(created.map((path) => rm(path, { force: true })));
    await rm(join(this.config.runDir, "qemu-root"), { recursive: true, force: true });
    await this.cpuGroup?.remove();
    await this.uidLease?.release();
    this.uidLease = undefined;
  }

  async [Symbol.asyncDispose](): Promise<void> {
    await this.cleanup();
  }

  processes(): VmProcess[] {
    return [...(this.qemu ? [this.qemu] : []), ...this.daemons].filter((t) => !t.done).map((t) => t.record);
  }

  private elapsed(): number {
    return performance.now() - this.startedAt;
  }

  /** `listenFd`: a descriptor the child gets as fd 3 (VIRTIOFSD_LISTEN_FD). */
  /** Empties a running process's log past PROCESS_LOG_CAP_BYTES (its fd appends, so it writes on at the new end). */
  private capLogs(): void {
    for (const t of [this.qemu, ...this.daemons]) {
      if (!t || t.done) continue;
      try {
        const size = statSync(t.logPath).size;
        if (size <= PROCESS_LOG_CAP_BYTES) continue;
        truncateSync(t.logPath, 0);
        appendFileSync(t.logPath, `[iii-worker: ${size} bytes of this log dropped at ${new Date().toISOString()} (more than ${PROCESS_LOG_CAP_BYTES})]\n`);
      } catch {
        // gone with its run directory
      }
    }
  }

  private spawnTracked(role: VmProcess["role"], command: string[], logPath: string, tag?: string, listenFd?: number): Tracked {
    const argv = role === "virtiofsd" ? [...parentDeathWrapper(), ...command] : command;
    // O_APPEND: a log emptied by capLogs() is written on from its new end, not past a hole.
    const logFd = openSync(logPath, fsConstants.O_WRONLY | fsConstants.O_CREAT | fsConstants.O_TRUNC | fsConstants.O_APPEND, 0o644);
    if (!this.logCheck) {
      this.logCheck = setInterval(() => this.capLogs(), LOG_CHECK_MS);
      this.logCheck.unref();
    }
    let child: ChildProcess;
    try {
      // Logs go straight to files: they outlive a crashed supervisor, and a dead pipe can never SIGPIPE QEMU.
      child = spawn(argv[0]!, argv.slice(1), { stdio: listenFd === undefined ? ["ignore", logFd, logFd] : ["ignore", logFd, logFd, listenFd] });
    } finally {
      closeSync(logFd);
    }
    const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) => {
      child.once("exit", (code, signal) => resolve({ code, signal }));
      child.once("error", () => resolve({ code: null, signal: null }));
    });
    const pid = child.pid ?? -1;
    const tracked: Tracked = {
      record: { role, tag, pid, startTime: processStartTime(pid) ?? 0, argv: command },
      child,
      exited,
      done: false,
      logPath,
    };
    void exited.then((exit) => {
      tracked.done = true;
      tracked.exit = exit;
      // virtiofsd ends by itself (code 0) when QEMU closes the vhost-user connection at the guest's reboot;
      // a signal or an error code while QEMU runs means the guest lost that file system.
      const failed = exit.signal !== null || exit.code !== 0;
      if (role !== "qemu" && failed && !this.stopping && this.qemu && !this.qemu.done) this.config.onDaemonExit?.(tracked.record, exit);
    });
    return tracked;
  }

  private async waitForSocket(tracked: Tracked, path: string, timeoutMs: number): Promise<void> {
    const deadline = performance.now() + timeoutMs;
    while (!isListening(path)) {
      if (tracked.done) {
        throw new IiiError("VmBootFailed", `VM ${this.config.name}: virtiofsd for ${tracked.record.tag} exited: ${lastLines(readTail(tracked.logPath), 5) || "no output"}`);
      }
      if (performance.now() > deadline) throw new IiiError("VmBootFailed", `VM ${this.config.name}: virtiofsd for ${tracked.record.tag} did not create ${path} within ${timeoutMs} ms`);
      await delay(2);
    }
  }

  private async watchExit(qemu: Tracked): Promise<VmExit> {
    const { code, signal } = await qemu.exited;
    this.timings.exitedMs = this.elapsed();
    // Let QMP deliver the SHUTDOWN event that precedes QEMU's exit.
    await delay(20);
    const events = this.qmp?.events ?? [];
    let reason = shutdownReason(events) ?? (signal ? `signal-${signal}` : "unknown");
    if (reason === "guest-reset" && /Kernel panic - not syncing/.test(readTail(this.config.consoleLogPath, 16 * 1024, this.consoleOffset))) reason = "guest-panic";
    if (!this.failureError && !this.stopping && (code !== 0 || signal !== null)) {
      // QEMU exits 0 for every guest-initiated end and for SIGTERM (DESIGN §3): anything else is QEMU's own
      // failure, e.g. an assertion when KVM refuses the vCPU's MSRs (measured on kvm_pvm: "failed to set
      // MSR 0x10a") or a SIGKILL from outside.
      this.failureError = this.qemuFailure(`QEMU ${signal ? `died of ${signal}` : `exited with code ${code}`}`);
      this.failureReason = "qemu-crashed";
    }
    if (this.failureError) reason = this.failureError.code === "KvmUnavailable" ? "kvm-failed" : (this.failureReason ?? "qemu-crashed");
    this.exitInfo = {
      reason,
      exitCode: code,
      signal,
      events: events.map((e) => ({ ...e })),
      uptimeMs: performance.now() - this.startedAt,
      ...(this.failureError ? { error: this.failureError } : {}),
    };
    this.qmp?.close();
    // virtiofsd ends by itself when QEMU hangs up; make sure.
    void this.killAll(1_000);
    return this.exitInfo;
  }

  private async checkInternalError(): Promise<void> {
    const status = (await this.qmp?.execute("query-status").catch(() => undefined)) as { status?: string } | undefined;
    if (status?.status !== "internal-error") return;
    const log = lastLines(readTail(this.qemu!.logPath), 8);
    this.failureError =
      this.accel.accel === "kvm"
        ? new IiiError("KvmUnavailable", `VM ${this.config.name}: KVM cannot run this guest (${this.accel.reason}): ${log || "internal error"}; use III_ACCEL=tcg`)
        : new IiiError("VmBootFailed", `VM ${this.config.name}: QEMU stopped with an internal error: ${log}`);
    this.failureReason = "internal-error";
    this.signal(this.qemu!, "SIGKILL");
  }

  private startFailure(what: string): IiiError {
    return this.qemuFailure(what);
  }

  /** KvmUnavailable when KVM was in use and QEMU's log blames it, else VmBootFailed; both quote QEMU's log. */
  private qemuFailure(what: string): IiiError {
    const log = lastLines(readTail(this.qemu!.logPath), 8);
    if (this.accel.accel === "kvm" && /kvm|MSR/i.test(log)) {
      return new IiiError("KvmUnavailable", `VM ${this.config.name}: KVM cannot run the guest (accel kvm: ${this.accel.reason}): ${log}; use III_ACCEL=tcg`);
    }
    return this.bootFailure(`${what}${log ? `: ${log}` : ""}`);
  }

  private bootFailure(what: string): IiiError {
    const tail = consoleTail(this.config.consoleLogPath, 20, this.consoleOffset);
    return new IiiError("VmBootFailed", `VM ${this.config.name} failed to boot: ${what}${tail ? `\n--- console tail ---\n${tail}` : " (console is empty)"}`);
  }

  private signal(tracked: Tracked, signal: NodeJS.Signals): void {
    if (tracked.done) return;
    try {
      tracked.child.kill(signal);
    } catch {
      // already gone
    }
  }

  /** SIGTERM every live process, SIGKILL what is left after `graceMs`. */
  private async killAll(graceMs: number): Promise<void> {
    this.closeListenFds();
    const live = [...(this.qemu ? [this.qemu] : []), ...this.daemons].filter((t) => !t.done);
    for (const t of live) this.signal(t, "SIGTERM");
    await Promise.all(
      live.map(async (t) => {
        if (!(await settlesWithin(t.exited, graceMs))) {
          this.signal(t, "SIGKILL");
          await t.exited;
        }
      }),
    );
  }
}

/**
 * True when a unix socket at `path` is listening. The file appears at bind(), a moment before listen();
 * probing by connecting is not an option (virtiofsd serves exactly one connection), so read the kernel's
 * table: flag __SO_ACCEPTCON (0x10000) marks a listener.
 */
export function isListening(path: string): boolean {
  if (!existsSync(path)) return false;
  let table: string;
  try {
    table = readFileSync("/proc/net/unix", "utf8");
  } catch {
    return true; // no /proc: the file's existence is the best we know
  }
  for (const line of table.split("\n")) {
    if (!line.endsWith(` ${path}`)) continue;
    const flags = line.trim().split(/\s+/)[3];
    if (flags && (Number.parseInt(flags, 16) & 0x10000) !== 0) return true;
  }
  return false;
}

function fileSize(path: string): number {
  try {
    return statSync(path).size;
  } catch {
    return 0;
  }
}

function isDirectory(path: string): boolean {
  try {
    return statSync(path).isDirectory();
  } catch {
    return false;
  }
}

function lastLines(text: string, n: number): string {
  return text.split(/\r?\n/).filter((l) => l.trim()).slice(-n).join(" | ");
}

function delay(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms));
}

async function settlesWithin(promise: Promise<unknown>, ms: number): Promise<boolean> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<false>((r) => {
    timer = setTimeout(() => r(false), ms);
  });
  try {
    return await Promise.race([promise.then(() => true), timeout]);
  } finally {
    clearTimeout(timer);
  }
}

/** The qemu adapter's factory: what the supervisor is given (it depends on Vmm and VmmFactory only). */
export const createQemuVmm: VmmFactory = (options) => new QemuVmm(options);


/**
 * virtiofsd is started through `setpriv --pdeathsig KILL` (util-linux): it dies with the supervisor instead of
 * waiting forever for a QEMU that never connects. vm.json names it for `stop`'s crash cleanup, but only once the
 * record is written, after the spawn: a supervisor killed in between left an orphan nobody knew of (seen in a
 * clean-clone CI run under load: a virtiofsd of a killed boot still running ten minutes on). The signal holds
 * across its exec (virtiofsd is no set-user-ID binary). QEMU gets none: it changes its credentials (-runas), which clears the setting, and it is recorded before the VMM
 * waits. Without setpriv, nothing is prepended.
 */
function parentDeathWrapper(): string[] {
  parentDeath ??= existsSync(SETPRIV) ? [SETPRIV, "--pdeathsig", "KILL", "--"] : [];
  return parentDeath;
}
const SETPRIV = "/usr/bin/setpriv";
let parentDeath: string[] | undefined;

/**
 * QEMU drops to its leased uid (-runas), which clears any parent-death signal, so it cannot die with the supervisor
 * by itself: a supervisor killed (kill -9, the OOM killer) left its VM running, unreachable, until the next `stop`
 * or `start` (seen in session 19: alive 20 s after). A root shell waits beside it and, when the supervisor dies,
 * kills QEMU if the same process (pid and start time) still runs. Two triggers, either enough: the parent-death
 * signal (`setpriv --pdeathsig TERM`), and end of file on its stdin, a pipe only this process holds (the kernel
 * closes it however this process ends). A clean-clone CI run once found QEMU alive 10 s after its supervisor's
 * kill -9 with only the signal armed, never reproduced here; the shell's verdict goes to `logPath`, which the
 * kill -9 test prints when it fails. cleanup() ends the watch once QEMU has ended. Without setpriv there is none.
 */
function watchQemuForParentDeath(qemu: { pid: number; startTime: number }, logPath: string): ChildProcess | undefined {
  if (parentDeathWrapper().length === 0 || qemu.pid <= 0 || !qemu.startTime) return undefined;
  // /proc/PID/stat field 22 is the start time in ticks (QEMU's comm has no space or parenthesis).
  const script =
    'qemu="$0"; started="$1"; ' +
    'same() { [ "$(cut -d" " -f22 "/proc/$qemu/stat" 2>/dev/null)" = "$started" ]; }; ' +
    'fire() { trap "" TERM; if same; then kill -9 "$qemu" && echo "$(date +%T.%N) supervisor gone ($1): killed QEMU $qemu"; ' +
    'else echo "$(date +%T.%N) watch ended ($1): QEMU $qemu is not running"; fi; exit 0; }; ' +
    'trap "fire signal" TERM; echo "$(date +%T.%N) watching QEMU $qemu"; read -r _; fire "end of file"';
  let logFd: number | undefined;
  try {
    logFd = openSync(logPath, fsConstants.O_WRONLY | fsConstants.O_CREAT | fsConstants.O_APPEND, 0o644);
    const child = spawn(SETPRIV, ["--pdeathsig", "TERM", "--", "/bin/sh", "-c", script, String(qemu.pid), String(qemu.startTime)], {
      stdio: ["pipe", logFd, logFd],
    });
    child.on("error", () => undefined);
    child.stdin?.on("error", () => undefined);
    child.unref();
    (child.stdin as unknown as { unref?: () => void } | null)?.unref?.();
    return child;
  } catch {
    return undefined;
  } finally {
    if (logFd !== undefined) closeSync(logFd);
  }
}
