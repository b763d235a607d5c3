import { closeSync, createWriteStream, openSync, type WriteStream } from "node:fs";
import { mkdir, readFile, rm, stat } from "node:fs/promises";
import net from "node:net";
import { isAbsolute, join, relative } from "node:path";
import { setTimeout as sleep } from "node:timers/promises";
import type { VirtualFileSource } from "@iii/filesystem";
import { encodeEnvFile, HostControl, type GuestSpec, type ReadyMessage, type WorkloadExitMessage } from "@iii/init";
import { NetworkStack } from "@iii/network";
import writeFileAtomic from "write-file-atomic";
import { errnoCode, IiiError, toIiiError } from "../errors.js";
import { resolveKernel } from "../firmware/index.js";
import { tryHoldFileLock, withFileLock } from "../host/file-lock.js";
import { processStartTime } from "../host/process-identity.js";
import { managedRoot as managedRootOf, workerPaths, type WorkerPaths } from "../paths.js";
import type { LastExit, VmRecord } from "../status.js";
import { LogTimesWriter } from "../log-times.js";
import { chooseAccel, probeAccelFacts, QemuVmm, type VmExit } from "../vmm/index.js";
import { cleanupStaleWorker, lazyUnmount, mountsUnder } from "./cleanup.js";
import { ApiServer } from "../api/server.js";
import { ExecRegistry } from "../api/exec-registry.js";
import { findGuestInit } from "./guest-init.js";
import { startFsServer } from "./fs-server.js";
import type { LaunchRequest } from "./launch-request.js";
import { buildLaunchSpec, type LaunchSpec } from "./launch-spec.js";
import { policyRules } from "./policy-rules.js";
import { ReadyPipe } from "./ready-pipe.js";
import { allocateSlot } from "./slots.js";

export const ROOT_TAG = "rootfs";
export const ENV_FILE_GUEST_PATH = "/.iii/env.json";
/** After the grace period, how long init may take to kill, sync and reboot before QEMU is stopped. */
const SHUTDOWN_MARGIN_MS = 5_000;
const LOG_ROTATE_BYTES = 16 * 1024 * 1024;

function ipv4(n: number): string {
  return [n >>> 24, (n >>> 16) & 255, (n >>> 8) & 255, n & 255].join(".");
}

/** Slot s owns the /30 at 100.96.0.0 + 4s (DESIGN §6); mirrors @iii/network's addressing. */
export function slotIps(slot: number): { gateway: string; guest: string; guestMac: string } {
  const base = ((100 << 24) | (96 << 16)) + slot * 4;
  const hh = (slot >>> 8).toString(16).padStart(2, "0");
  const ll = (slot & 255).toString(16).padStart(2, "0");
  return { gateway: ipv4(base + 1), guest: ipv4(base + 2), guestMac: `02:6d:73:${hh}:${ll}:02` };
}

function log(message: string): void {
  process.stderr.write(`${new Date().toISOString()} ${message}\n`);
}

/** Owns every resource of the VM; releases them in reverse order of acquisition, once. */
class ResourceOwner {
  private readonly releases: Array<{ what: string; release: () => Promise<unknown> | unknown }> = [];
  private released = false;

  add(what: string, release: () => Promise<unknown> | unknown): void {
    this.releases.push({ what, release });
  }

  async releaseAll(): Promise<void> {
    if (this.released) return;
    this.released = true;
    for (const { what, release } of this.releases.reverse()) {
      try {
        await release();
      } catch (error) {
        log(`cleanup of ${what} failed: ${(error as Error).message}`);
      }
    }
  }
}

/** Appends a stream to a log file, starting a new file (old one → `.1`) past a size limit. */
class RotatingLog {
  private stream: WriteStream;
  private bytes = 0;
  private readonly times: LogTimesWriter;

  constructor(private readonly path: string) {
    this.times = new LogTimesWriter(path);
    this.stream = createWriteStream(path, { flags: "a" });
  }

  async write(chunk: Buffer): Promise<void> {
    if (this.bytes + chunk.length > LOG_ROTATE_BYTES) {
      await new Promise<void>((resolve) => this.stream.end(resolve));
      await rm(`${this.path}.1`, { force: true });
      const { rename } = await import("node:fs/promises");
      await rename(this.path, `${this.path}.1`).catch(() => {});
      this.times.rotate();
      this.stream = createWriteStream(this.path, { flags: "a" });
      this.bytes = 0;
    }
    this.bytes += chunk.length;
    this.times.record(chunk.length);
    if (!this.stream.write(chunk)) await new Promise<void>((resolve) => this.stream.once("drain", () => resolve()));
  }

  close(): Promise<void> {
    this.times.close();
    return new Promise((resolve) => this.stream.end(resolve));
  }
}

async function writeJson(path: string, value: unknown): Promise<void> {
  await writeFileAtomic(path, `${JSON.stringify(value, null, 2)}\n`);
}

function guestSpecFor(launch: LaunchSpec, slot: number, mountTags: string[]): GuestSpec {
  const ips = slotIps(slot);
  return {
    cmd: launch.argv,
    workdir: launch.workdir,
    user: launch.user,
    network: { ip: ips.guest, gateway: ips.gateway, prefixLength: 30, dns: [ips.gateway], mtu: 1500 },
    memoryBytes: launch.memoryBytes,
    pidsMax: launch.pidsMax,
    ...(launch.cpuLimit !== undefined ? { cpus: launch.cpuLimit } : {}),
    hostname: launch.name,
    mounts: launch.mounts.map((m, i) => ({ tag: mountTags[i]!, path: m.guest, readOnly: m.readOnly })),
    env: launch.env,
  };
}

/**
 * `iii-worker __vm-boot <name>`: one per VM, in its own session. Owns the FUSE mount, the network stack,
 * the control channel, virtiofsd and QEMU; reports the boot outcome on the ready pipe; streams the
 * workload's output to the log files; records the exit; releases everything on any exit.
 */
export async function runSupervisor(name: string, projectDir: string, env: NodeJS.ProcessEnv = process.env): Promise<number> {
  const paths = workerPaths(name, env, projectDir);
  const ready = new ReadyPipe(env.III_READY_FD ? Number(env.III_READY_FD) : undefined);
  const owner = new ResourceOwner();
  const startedAt = performance.now();
  const timings: Record<string, number> = {};
  const mark = (phase: string) => (timings[phase] = Math.round(performance.now() - startedAt));
  let vmm: QemuVmm | undefined;
  let control: HostControl | undefined;
  let stopRequested = false;
  let lastExitWritten = false;
  let workloadExit: WorkloadExitMessage | undefined;
  let readyAt: number | undefined;
  let execs: ExecRegistry | undefined;
  /** Set when a process of the VM died on its own: the run ends as crashed, naming it. */
  let crash: string | undefined;

  /**
   * Any child that dies takes the VM with it: a dead FUSE server or virtiofsd leaves the guest's I/O hanging
   * forever, so execs fail at once with the reason, the crash is recorded before anything is released (list
   * says crashed while the teardown runs), and QEMU is ended.
   */
  const childDied = (what: string) => {
    if (crash || stopRequested) return;
    crash = what;
    log(`${what}: tearing the VM down`);
    execs?.abortAll(`worker "${name}" crashed: ${what}`);
    void writeLastExit(paths, undefined, timings, undefined, what, true).then(() => (lastExitWritten = true), () => {});
    void vmm?.stop({ timeoutMs: 500 }).catch(() => {});
  };

  const requestStop = async (signal: string, requestedGraceMs?: number) => {
    if (stopRequested) return;
    stopRequested = true;
    let graceMs = requestedGraceMs ?? launchRequest?.stopGraceMs ?? 10_000;
    try {
      const stop = JSON.parse(await readFile(join(paths.dir, "stop.json"), "utf8")) as { graceMs?: number };
      if (typeof stop.graceMs === "number" && requestedGraceMs === undefined) graceMs = stop.graceMs;
      await rm(join(paths.dir, "stop.json"), { force: true });
    } catch {
      // no stop request file: default grace
    }
    log(`${signal}: stopping (grace ${graceMs} ms)`);
    if (control && vmm) {
      control.shutdown(graceMs);
      await Promise.race([vmm.wait(), sleep(graceMs + SHUTDOWN_MARGIN_MS, undefined, { ref: false })]);
    }
    await vmm?.stop({ timeoutMs: 2_000 });
  };
  let launchRequest: LaunchRequest | undefined;
  for (const signal of ["SIGTERM", "SIGINT", "SIGHUP"] as const) process.on(signal, () => void requestStop(signal));

  try {
    await mkdir(paths.logs, { recursive: true });
    const lock = await tryHoldFileLock(paths.lock);
    if (!lock) throw new IiiError("VmBootFailed", `worker "${name}" is already running (its lock is held)`);
    owner.add("worker lock", () => lock.release());

    launchRequest = JSON.parse(await readFile(paths.launch, "utf8")) as LaunchRequest;
    const request = launchRequest;
    const previous = await readFile(paths.vmJson, "utf8").then((t) => JSON.parse(t) as VmRecord).catch(() => undefined);
    const cleaned = await cleanupStaleWorker(paths, previous);
    if (cleaned.length > 0) log(`cleaned up after a crashed run: ${cleaned.join(", ")}`);

    const managedRoot = managedRootOf(env);
    const record: VmRecord = {
      pid: process.pid,
      startTime: processStartTime(process.pid) ?? 0,
      vmm: "qemu",
      startedAt: new Date().toISOString(),
      sockets: { api: paths.apiSock, control: paths.controlSock, net: paths.netSock, qmp: join(paths.runtime, "qmp.sock") },
      children: [],
    };
    const slot = await withFileLock(join(managedRoot, ".slots.lock"), async () => {
      const s = await allocateSlot(managedRoot);
      record.slot = s;
      await writeJson(paths.vmJson, record);
      return s;
    });
    owner.add("vm.json", () => rm(paths.vmJson, { force: true }));
    const ips = slotIps(slot);
    const launch = buildLaunchSpec({
      name,
      spec: request.spec,
      rootfs: request.rootfs,
      ...(request.image ? { image: request.image } : {}),
      engineUrl: request.engineUrl,
      gateway: ips.gateway,
      fresh: request.fresh,
      accel: chooseAccel(probeAccelFacts(env)).accel,
    });
    log(`booting ${name}: slot ${slot} (guest ${ips.guest}), ${launch.vcpus} vCPU, ${launch.memoryBytes} bytes, argv ${JSON.stringify(launch.argv)}`);

    const { kernel } = await resolveKernel({ env });
    mark("firmware");

    if (launch.fresh) await rm(paths.upper, { recursive: true, force: true });
    await mkdir(paths.upper, { recursive: true });
    await mkdir(paths.mnt, { recursive: true });
    await mkdir(paths.runtime, { recursive: true });
    owner.add("run dir", () => rm(paths.runtime, { recursive: true, force: true }));

    const mountTags = launch.mounts.map((_, i) => `iii-m${i}`);
    const guestInit = findGuestInit(env);
    const virtualFiles: Record<string, VirtualFileSource> = { "/init.krun": { hostPath: guestInit.init } };
    for (const [path, hostPath] of Object.entries(guestInit.runtime)) virtualFiles[path] = { hostPath };
    virtualFiles[ENV_FILE_GUEST_PATH] = { content: encodeEnvFile(guestSpecFor(launch, slot, mountTags)) };
    const mountConfig = join(paths.runtime, "rootfs-mount.json");
    // allowOther: virtiofsd takes on the guest caller's uid for each request, and FUSE refuses any uid but the
    // mounting one without it. The mountpoint is inside managed/ (0700): no host user reaches it either way.
    await writeJson(mountConfig, { layers: { lower: launch.rootfs, upper: paths.upper }, mountpoint: paths.mnt, virtualFiles, allowOther: true });
    const fsLog = openSync(paths.supervisorLog, "a");
    const fsServer = await startFsServer(mountConfig, fsLog).finally(() => closeSync(fsLog));
    owner.add("rootfs mount", () => stopAndUnmount(fsServer, paths.mnt));
    fsServer.onUnexpectedExit((how) => childDied(`the FUSE server of the root filesystem (iii-fs pid ${fsServer.pid}) ${how}`));
    record.children = [{ name: "iii-fs", pid: fsServer.pid, startTime: fsServer.startTime }];
    // Writable shares reach virtiofsd only through our FUSE view, never as the raw host directory: what
    // the guest makes there (setuid bits, device nodes, file capabilities, its owners) stays metadata in an
    // xattr, and new files belong on the host to the directory's owner.
    const shareDirs = await Promise.all(
      launch.mounts.map(async (m, i) => {
        if (!(await stat(m.host).then((s) => s.isDirectory(), () => false))) {
          throw new IiiError("InvalidOption", `shared directory ${m.host} (for ${m.guest}) is not a directory`);
        }
        if (m.readOnly) return m.host;
        const mountpoint = join(paths.dir, "shares", String(i));
        const rel = relative(m.host, mountpoint);
        if (!rel.startsWith("..") && !isAbsolute(rel)) {
          throw new IiiError("InvalidOption", `cannot share ${m.host} writable: it contains III_HOME's managed directory (${paths.dir}); share a directory outside it, or mount it read-only`);
        }
        await mkdir(mountpoint, { recursive: true });
        const config = join(paths.runtime, `share-${i}-mount.json`);
        // The host edits a share while the guest runs (dev mode's /workspace): no caching in the host kernel,
        // so the guest sees an edit at its next open. A share only the guest writes keeps the default cache.
        const cache = m.cache === "always" ? {} : { cache: { entryTimeoutSec: 0, attrTimeoutSec: 0, negativeTimeoutSec: 0, kernelCache: false } };
        await writeJson(config, { root: m.host, mountpoint, allowOther: true, ...cache });
        const shareLog = openSync(paths.supervisorLog, "a");
        const server = await startFsServer(config, shareLog, `share ${m.host}`).finally(() => closeSync(shareLog));
        owner.add(`share ${m.guest} mount`, () => stopAndUnmount(server, mountpoint));
        server.onUnexpectedExit((how) => childDied(`the FUSE server of share ${m.guest} (iii-fs pid ${server.pid}) ${how}`));
        record.children!.push({ name: `iii-fs:${m.guest}`, pid: server.pid, startTime: server.startTime });
        return mountpoint;
      }),
    );
    await writeJson(paths.vmJson, record);
    mark("mount");

    const stack = new NetworkStack({
      slot,
      policy: { mode: launch.network.mode, hostPorts: launch.network.hostPorts, rules: policyRules(launch.network) },
      ports: launch.ports.map((p) => ({ hostPort: p.host, guestPort: p.guest })),
      ...(env.III_DNS_UPSTREAM ? { dns: { upstreams: env.III_DNS_UPSTREAM.split(",").map((u) => u.trim()).filter(Boolean) } } : {}),
      log: (line: string) => log(`net: ${line}`),
      ...(request.capturePath ? { pcapPath: request.capturePath } : {}),
    });
    await stack.listen(paths.netSock);
    owner.add("network stack", () => stack.close());
    mark("network");

    execs = new ExecRegistry(() => (readyAt !== undefined && !crash ? control : undefined));
    const execRegistry = execs;
    const api = new ApiServer({
      paths,
      execs: execRegistry,
      status: () => ({
        name,
        state: readyAt === undefined ? "booting" : stopRequested ? "stopping" : "running",
        pid: process.pid,
        uptimeMs: Math.round(performance.now() - startedAt),
        slot,
        guestIp: ips.guest,
        gateway: ips.gateway,
        resources: { vcpus: launch.vcpus, memoryBytes: launch.memoryBytes },
        timings,
        execs: { running: execRegistry.runningCount, max: execRegistry.maxExecs },
        network: { policy: stack.policy.describe(), counters: stack.counters, dns: stack.dns.counters, flows: stack.snapshot() },
        workloadExit: workloadExit ?? null,
      }),
      stop: (graceMs) => void requestStop("POST /stop", graceMs),
      ping: async () => {
        if (readyAt === undefined || !control) throw new IiiError("VmNotRunning", "the guest is not ready");
        return control.ping(5_000);
      },
      restart: (graceMs) => {
        if (readyAt === undefined || !control || stopRequested) return false;
        log(`restarting the workload (grace ${graceMs} ms)`);
        control.restartWorkload(graceMs);
        return true;
      },
    });
    await api.listen();
    owner.add("api socket", async () => {
      execRegistry.close();
      await api.close();
    });

    const controlServer = net.createServer();
    const controlConnected = new Promise<net.Socket>((resolve) => controlServer.once("connection", resolve));
    await new Promise<void>((resolve, reject) => {
      controlServer.once("error", reject);
      controlServer.listen(paths.controlSock, () => resolve());
    });
    owner.add("control socket", () => new Promise((resolve) => controlServer.close(() => resolve(undefined))));

    const stdoutLog = new RotatingLog(paths.stdoutLog);
    const stderrLog = new RotatingLog(paths.stderrLog);
    owner.add("log files", async () => {
      await stdoutLog.close();
      await stderrLog.close();
    });

    vmm = new QemuVmm({
      name,
      kernelPath: kernel.elfPath,
      // Only the guest writes its root while it runs, so its page cache stays valid across opens: a Node
      // workload restarted in dev mode no longer re-reads its 120 MB binary through virtio-fs and FUSE.
      root: { tag: ROOT_TAG, hostDir: paths.mnt, cache: "always", timeoutSec: 1, xattr: true },
      shares: launch.mounts.map((m, i) => ({ tag: mountTags[i]!, hostDir: shareDirs[i]!, readOnly: m.readOnly, xattr: !m.readOnly, ...(m.cache ? { cache: m.cache } : {}) })),
      vcpus: launch.vcpus,
      memoryBytes: launch.memoryBytes,
      cmdlineExtra: [`III_INIT_ENV_FILE=${ENV_FILE_GUEST_PATH}`],
      network: { socketPath: paths.netSock, mac: ips.guestMac },
      consoleLogPath: paths.consoleLog,
      consoleAppend: true,
      control: { socketPath: paths.controlSock, mode: "client" },
      runDir: paths.runtime,
      hostEnv: env,
      onDaemonExit: (daemon, how) => childDied(`virtiofsd of ${daemon.tag === ROOT_TAG ? "the root filesystem" : `share ${daemon.tag}`} (pid ${daemon.pid}) ${describeExit(how)}`),
    });
    const vm = vmm;
    owner.add("vm", () => vm.cleanup());
    await vm.prepare();
    await vm.start();
    if (crash) throw new IiiError("VmBootFailed", crash);
    mark("qemu");
    record.children = [...record.children, ...vm.processes().map((p) => ({ name: p.tag ? `${p.role}:${p.tag}` : p.role, pid: p.pid, startTime: p.startTime }))];
    await writeJson(paths.vmJson, record);

    const vmEnded = vm.wait();
    const socket = await Promise.race([controlConnected, vmEnded.then(() => undefined)]);
    if (!socket) {
      const exit = await vmEnded;
      throw exit.error ?? vm.failure ?? new IiiError("VmBootFailed", `VM of "${name}" ended before its control port connected (${exit.reason})`);
    }
    control = HostControl.attach(socket);
    const hc = control;
    hc.on("error", (error) => log(`control: ${error.message}`));
    // Listening before READY: WORKLOAD_STARTED (or init's failure to spawn) follows READY in the same read.
    const workloadOutcome = new Promise<{ started: true } | { failed: string }>((resolve) => {
      hc.once("workloadStarted", () => resolve({ started: true }));
      hc.on("guestError", (m) => m.code === "INIT_FAILED" && resolve({ failed: m.message.replace(/ \(exit \d+\)$/, "") }));
    });
    hc.workloadStdout.on("data", (chunk: Buffer) => void stdoutLog.write(chunk));
    hc.workloadStderr.on("data", (chunk: Buffer) => void stderrLog.write(chunk));
    hc.on("log", (m) => log(`guest: ${JSON.stringify(m)}`));

    const readyMessage = await Promise.race([
      hc.ready,
      vmEnded.then((exit): never => {
        throw exit.error ?? vm.failure ?? new IiiError("VmBootFailed", `VM of "${name}" ended before init reported READY (${exit.reason})`);
      }),
      sleep(request.bootTimeoutMs, undefined, { ref: false }).then((): never => {
        throw new IiiError("VmBootFailed", `init of "${name}" did not report READY within ${request.bootTimeoutMs / 1000} s`);
      }),
    ]) as ReadyMessage;
    // "ready" means the workload runs: a command that cannot be spawned fails the start, with init's reason.
    const outcome = await Promise.race([
      workloadOutcome,
      vmEnded.then((exit) => ({ failed: `the VM ended before its workload started (${exit.reason})` })),
      sleep(request.bootTimeoutMs, undefined, { ref: false }).then(() => ({ failed: `init did not start the workload within ${request.bootTimeoutMs / 1000} s` })),
    ]);
    if ("failed" in outcome) throw new IiiError("WorkloadStartFailed", `worker "${name}" failed to start: ${outcome.failed}`);
    mark("ready");
    readyAt = Date.now();
    ready.report({ event: "ready", pid: process.pid, timings: { ...timings, ...guestTimings(readyMessage) } });
    log(`ready in ${timings.ready} ms`);

    hc.workloadExit.then(
      async (exit) => {
        workloadExit = exit;
        await writeLastExit(paths, exit, timings);
        lastExitWritten = true;
      },
      () => {},
    );
    const exit = await vmEnded;
    // WORKLOAD_EXIT precedes the reboot; give it a moment if the frames raced QEMU's exit.
    if (!workloadExit) await sleep(50);
    if (!crash && !stopRequested && !exit.error && !workloadExit) {
      // QEMU ended (a SIGTERM from outside exits 0, a guest panic resets) without the workload's end: not a stop.
      childDied(`the VM ended without its workload exiting (${exit.reason}${exit.signal ? `, QEMU got ${exit.signal}` : ""})`);
    }
    if (!crash && exit.error && !stopRequested) childDied(`QEMU (pid ${record.children?.find((p) => p.name === "qemu")?.pid ?? "?"}) ${exit.signal ? `died of ${exit.signal}` : `failed: ${exit.error.message}`}`);
    if (crash) {
      execRegistry.abortAll(`worker "${name}" crashed: ${crash}`);
      await writeLastExit(paths, workloadExit, timings, exit, crash, true);
      log(`VM ended: crashed: ${crash}`);
      return 1;
    }
    await sleep(50);
    if (!lastExitWritten) await writeLastExit(paths, workloadExit, timings, exit);
    log(`VM ended: ${exit.reason}`);
    return 0;
  } catch (error) {
    // Another package's typed error (FilesystemError, NetworkError) keeps its code to the CLI line.
    const iii = toIiiError(error, "VmBootFailed");
    log(`failed: ${iii.message}${errnoCode(error) ? ` (${errnoCode(error)})` : ""}\n${(error as Error).stack ?? ""}`);
    const startFailed = iii.code === "WorkloadStartFailed";
    // Init's last words (the failed spawn, its exit) reach the console while QEMU is still going down.
    if (startFailed) await Promise.race([vmm?.wait(), sleep(2_000, undefined, { ref: false })]);
    const consoleLines = await readFile(paths.consoleLog, "utf8").then((t) => t.trimEnd().split("\n"), () => [] as string[]);
    const consoleTail = consoleLines.slice(-15).join("\n");
    ready.report({ event: "failed", code: iii.code, message: iii.message, consoleTail: startFailed ? consoleLines.slice(-5).join("\n") : consoleTail });
    if (!lastExitWritten || crash) {
      const extra = startFailed ? { startFailed: true, consoleTail: consoleLines.slice(-5) } : {};
      await writeLastExit(paths, workloadExit, timings, undefined, crash ?? iii.message, crash !== undefined, extra).catch(() => {});
    }
    return 1;
  } finally {
    control?.close();
    await owner.releaseAll();
  }
}

/**
 * Stops a FUSE server; when it had died (killed), its mount is left dead ("Transport endpoint is not connected")
 * until fuse's auto_unmount watchdog gets to it, which can lag seconds: unmount it here, before the run ends.
 */
async function stopAndUnmount(server: { stop: () => Promise<void> }, mountpoint: string): Promise<void> {
  await server.stop();
  if ((await mountsUnder(mountpoint)).includes(mountpoint)) await lazyUnmount(mountpoint);
}

function guestTimings(ready: ReadyMessage): Record<string, number> {
  const out: Record<string, number> = {};
  out["guest:boot"] = ready.bootMs;
  for (const step of ready.timings) out[`guest:${step.step}`] = step.ms;
  return out;
}

function describeExit(exit: { code: number | null; signal: NodeJS.Signals | null }): string {
  return exit.signal ? `died of ${exit.signal}` : `exited with code ${exit.code}`;
}

async function writeLastExit(
  paths: WorkerPaths,
  exit: WorkloadExitMessage | undefined,
  timings: Record<string, number>,
  vmExit?: VmExit,
  failure?: string,
  crashed = false,
  extra: Partial<LastExit> = {},
): Promise<void> {
  const record: LastExit = {
    ...(crashed ? { crashed: true } : {}),
    ...(exit?.oomKilled ? { oomKilled: true } : {}),
    ...extra,
    code: exit ? exit.code : null,
    reason:
      failure ??
      (exit
        ? exit.oomKilled
          ? "workload killed by the out-of-memory killer"
          : exit.signal
            ? `workload killed by ${exit.signal}${exit.escalated ? " after the grace period" : ""}`
            : `workload exited with ${exit.code}`
        : `VM ended: ${vmExit?.reason ?? "unknown"}`),
    endedAt: new Date().toISOString(),
    timings,
  };
  await writeJson(paths.lastExit, record);
}
