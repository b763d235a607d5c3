import { cgroupNameFor, removeCpuCgroup } from "./host/cpu-cgroup.js";
import { existsSync, statSync } from "node:fs";
import { dirname, resolve } from "node:path";
import { access, chmod, mkdir, rm, stat, constants } from "node:fs/promises";
import { setTimeout as sleep } from "node:timers/promises";
import { IiiError } from "./errors.js";
import { awaitWorkerOperation, holdWorkerOperation } from "./state/worker-op-lock.js";
import { withImagesInUse } from "./images/cache/in-use-lock.js";
import { assertNoDirSharedWithPreview1 } from "./launch/cross-tier.js";
import { assertProjectFileNotShared } from "./launch/share-safety.js";
import { isSameProcessAlive } from "./host/process-identity.js";
import { iiiHome, managedRoot, workerPaths, workersFilePath, type WorkerPaths } from "./paths.js";
import { readVmRecord } from "./state/vm-record.js";
import { assertRootfsOnlyOurs } from "./state/home-safety.js";
import { workerStatus } from "./status.js";
import { cleanupStaleWorker, lazyUnmount, mountsUnder } from "./supervisor/cleanup.js";
import { DEFAULT_BOOT_TIMEOUT_MS, DEFAULT_STOP_GRACE_MS, type HostChoices, type LaunchRequest } from "./launch/request.js";
import { spawnSupervisor, type StandbySupervisor } from "./launch/spawn.js";
import type { ImageProcessConfig } from "./launch/spec.js";
import { findGuestInit } from "./launch/guest-init.js";
import { policyRules } from "./launch/policy-rules.js";
import { resolveKernel } from "./firmware/resolve-kernel.js";
import { findQemu, findVirtiofsd } from "./host/binaries.js";
import type { PullPolicy } from "./images/index.js";
import { getWorker } from "./workers.js";
import { loadWorkersFile } from "./state/workers-file.js";
import { isWasmImage, type WorkerSpec } from "./state/model.js";
import { canReadWrite, writableDirError } from "./host/writable.js";
import { writeFileAtomic } from "./util/atomic-write.js";
import { checkOutputPath } from "./host/output-file.js";
import { resolveAccel } from "./vmm/accel.js";

/** After the grace period, how long the supervisor may take to kill QEMU and clean up. */
export const KILL_DEADLINE_MS = 5_000;

/**
 * Makes the worker's directory, naming III_HOME in the error when it cannot be written. `managed/` is 0700
 * (made so, not only created so): what guests wrote (upper layers, shares' FUSE views) and the sockets that
 * drive the VMs are for the owner of III_HOME only.
 */
export async function prepareWorkerDir(paths: WorkerPaths, home: string, env: NodeJS.ProcessEnv = process.env): Promise<void> {
  try {
    const root = managedRoot(env);
    await mkdir(root, { recursive: true, mode: 0o700 });
    await chmod(root, 0o700);
    await mkdir(paths.logs, { recursive: true, mode: 0o700 });
    await access(paths.dir, constants.W_OK);
  } catch (error) {
    throw new IiiError("HomeUnwritable", `III_HOME ${home} is not writable: ${(error as Error).message}`, { cause: error });
  }
}

export interface StopOptions {
  graceMs?: number;
  env?: NodeJS.ProcessEnv;
  /** The project directory (default: the current directory). */
  cwd?: string;
}

export type StopOutcome = "stopped" | "not-running" | "cleaned-crashed";

/**
 * Stops a worker: asks its supervisor for a graceful shutdown over its API (`POST /stop {graceMs}`, the one
 * stop path), which sends SHUTDOWN {graceMs} to init; a supervisor that does not answer there yet (still
 * mounting) or a WASM runner gets SIGTERM, which it handles as the same stop with the launch's grace. If it
 * is still there after grace + kill deadline, it is cleaned up after.
 */
export async function stopWorker(name: string, options: StopOptions = {}): Promise<StopOutcome> {
  const env = options.env ?? process.env;
  const cwd = options.cwd ?? process.cwd();
  const paths = workerPaths(name, env, cwd);
  const record = await readVmRecord(name, env, cwd);
  if (!record) return "not-running";
  if (!isSameProcessAlive(record)) {
    await cleanupStaleWorker(paths, record);
    return "cleaned-crashed";
  }
  const graceMs = options.graceMs ?? DEFAULT_STOP_GRACE_MS;
  const { SupervisorClient } = await import("./api/client.js");
  await new SupervisorClient(paths.apiSock).stop(graceMs).catch(() => {
    try {
      process.kill(record.pid, "SIGTERM");
    } catch {
      // already gone
    }
  });
  const deadline = Date.now() + graceMs + KILL_DEADLINE_MS + 2_000;
  while (Date.now() < deadline) {
    if (!isSameProcessAlive(record)) return "stopped";
    await sleep(50);
  }
  // vm.json as it is now: the supervisor may have recorded QEMU and its daemons after the first read.
  await cleanupStaleWorker(paths, (await readVmRecord(name, env, cwd)) ?? record);
  return "stopped";
}

/**
 * `stop` from the CLI (stop, stop-all, restart). A worker with no live run may have a `start` under way that has not
 * recorded its run yet (checks, an image pull, the supervisor spawning: vm.json comes last): stopWorker alone said
 * "not running" then and the start booted on, so the VM ran after a stop that returned 0 (review rev6i). This waits
 * for that start (the worker's operation lock, which a start holds until READY or its failure), then stops what it
 * started. Cleaning up after a crashed run happens under that lock too, so it cannot meet a new run's supervisor
 * (it unmounts everything under the worker's directory and deletes vm.json and the sockets). Not for a process that
 * holds that lock itself (remove --force, a start's own interrupt).
 */
export async function stopWorkerAfterStart(name: string, options: StopOptions & { onWait?: () => void } = {}): Promise<StopOutcome> {
  const env = options.env ?? process.env;
  const cwd = options.cwd ?? process.cwd();
  const before = await readVmRecord(name, env, cwd);
  if (before && isSameProcessAlive(before)) return stopWorker(name, options);
  const held = await awaitWorkerOperation(name, env, cwd, options.onWait ? { onWait: options.onWait } : {});
  const record = await readVmRecord(name, env, cwd);
  if (record && isSameProcessAlive(record)) {
    // The start it waited for is up: a live run is stopped as any (a start meanwhile sees it running).
    await held.release();
    return stopWorker(name, options);
  }
  try {
    return await stopWorker(name, options);
  } finally {
    await held.release();
  }
}

/** A supervisor that recorded the end of its run may still be releasing its mounts and children: wait for it. */
export async function awaitEndedSupervisor(name: string, env: NodeJS.ProcessEnv, cwd: string, timeoutMs = 15_000): Promise<void> {
  const record = await readVmRecord(name, env, cwd);
  if (!record) return;
  const deadline = Date.now() + timeoutMs;
  while (isSameProcessAlive(record)) {
    if (Date.now() > deadline) throw new IiiError("WorkerRunning", `the previous run of "${name}" is still shutting down (supervisor pid ${record.pid})`);
    await sleep(50);
  }
}

export interface StartOptions {
  pull?: PullPolicy;
  cwd?: string;
  env?: NodeJS.ProcessEnv;
  engineUrl: string;
  fresh?: boolean;
  stopGraceMs?: number;
  bootTimeoutMs?: number;
  /** Write a pcap of the guest's traffic to this file (relative to `cwd`). */
  capture?: string;
  /**
   * A supervisor spawned in standby for this worker when `start` began (launch/spawn.ts): it gets `go` once
   * every check passed, instead of a new spawn, and is aborted when one fails.
   */
  standby?: StandbySupervisor;
  /**
   * Aborted: no supervisor is spawned (or given `go`) after this; the start rejects with the signal's reason. One
   * already spawned boots on: the caller stops it (cli/start-interrupt.ts), since only vm.json says when it can be.
   */
  signal?: AbortSignal;
  /** Called synchronously as the supervisor is spawned (or given `go`): from then on a VM may be booting. */
  onSupervisor?: () => void;
}

/** `--capture FILE` as an absolute path whose directory is writable; refused before anything starts. */
export function capturePathFor(file: string, cwd: string): string {
  const path = resolve(cwd, file);
  if (existsSync(path) && !statSync(path).isFile()) throw new IiiError("InvalidOption", `invalid --capture ${file}: ${path} exists and is not a regular file`);
  // The directory must be there: nothing creates it, and a boot that failed on it left a crashed worker (the CLI
  // checks it sooner too, before its standby supervisor: cli/commands/start.ts; this is for library callers).
  if (!existsSync(path) && !statSync(dirname(path), { throwIfNoEntry: false })?.isDirectory()) {
    throw new IiiError("InvalidOption", `invalid --capture ${file}: cannot write ${path}: directory ${dirname(path)} does not exist`);
  }
  const error = existsSync(path) ? canReadWrite(path) : writableDirError(dirname(path));
  if (error) throw new IiiError("InvalidOption", `invalid --capture ${file}: cannot write ${path}: ${error}`);
  // The supervisor writes it as root: no link or file of another user's on the way (host/output-file.ts). Checked
  // again where it is opened.
  checkOutputPath(path, `--capture ${file}`);
  return path;
}

export interface StartResult {
  name: string;
  pid: number;
  timings: Record<string, number>;
  cleanedCrashed: boolean;
  tier?: "wasm";
}

async function isDirectory(path: string): Promise<boolean> {
  try {
    return (await stat(path)).isDirectory();
  } catch {
    return false;
  }
}

/** Resolves the worker's image to a read-only rootfs and the image's process config. */
async function resolveRootfs(image: string, env: NodeJS.ProcessEnv, pull: PullPolicy): Promise<{ rootfs: string; config?: ImageProcessConfig }> {
  if (image.startsWith("dir:")) {
    const rootfs = image.slice("dir:".length);
    if (!(await isDirectory(rootfs))) throw new IiiError("RootfsNotFound", `rootfs directory ${rootfs} does not exist`);
    // Booted in place, as this user (root, for most), with this worker's shares and network: a rootfs another local
    // user can change would run their code as guest root (review rev6i: alice edits bin/sh of /home/alice/rootfs).
    assertRootfsOnlyOurs(rootfs, image);
    return { rootfs };
  }
  // The image store and its registry client load only for an image (`start` of a dir: rootfs stays light).
  const { ensureImage } = await import("./images/index.js");
  const ensured = await ensureImage(image, { home: iiiHome(env), progress: process.stderr.isTTY === true, pull, env });
  const c = ensured.config;
  const config: ImageProcessConfig = {
    entrypoint: c.entrypoint,
    cmd: c.cmd,
    env: c.env,
    workingDir: c.workingDir,
    user: `${c.user.uid}:${c.user.gid}`,
  };
  if (c.stopSignal) config.stopSignal = c.stopSignal;
  return { rootfs: ensured.rootfs, config };
}

/** QEMU, virtiofsd and the accel, looked up once per start: the supervisor and the VMM use what is found here. */
function findHost(env: NodeJS.ProcessEnv): Pick<HostChoices, "qemuPath" | "virtiofsdPath" | "accel"> {
  const qemuPath = findQemu(env);
  if (!qemuPath) {
    throw new IiiError("QemuNotFound", env.III_QEMU_BIN ? `III_QEMU_BIN=${env.III_QEMU_BIN} is not an executable` : "qemu-system-x86_64 not found (apt install qemu-system-x86, or set III_QEMU_BIN)");
  }
  const virtiofsdPath = findVirtiofsd(env);
  if (!virtiofsdPath) throw new IiiError("VirtiofsdNotFound", "virtiofsd not found (apt install qemu-system-common, or set III_VIRTIOFSD_BIN)");
  return { qemuPath, virtiofsdPath, accel: resolveAccel(env) };
}

/**
 * `iii worker start`: every check that can fail on bad input runs before anything is created, then the
 * supervisor is spawned and this resolves when the guest's init reports READY. Holds the worker's operation lock
 * (state/worker-op-lock.ts) from reading its spec until READY: a `remove` meanwhile is refused.
 */
export async function startWorker(name: string, options: StartOptions): Promise<StartResult> {
  const cwd = options.cwd ?? process.cwd();
  return withStartLock(name, options, async () => {
    const spec = await getWorker(name, cwd);
    assertProjectFileNotShared(spec.mounts, workersFilePath(cwd));
    return startChecked(name, spec, options);
  });
}

/** Starts a worker from a spec that need not be in iii.workers.yaml (dev sandboxes); the same lock as startWorker. */
export async function startWorkerWithSpec(name: string, spec: WorkerSpec, options: StartOptions): Promise<StartResult> {
  return withStartLock(name, options, () => startChecked(name, spec, options));
}

async function withStartLock(name: string, options: StartOptions, start: () => Promise<StartResult>): Promise<StartResult> {
  try {
    const env = options.env ?? process.env;
    const operation = await holdWorkerOperation(name, "start", env, options.cwd ?? process.cwd());
    try {
      // Until READY the image this start uses is named nowhere prune looks (launch.json comes with the supervisor).
      // The start's ensureImage runs under this hold (re-entrant within the call chain), not a second one.
      return await withImagesInUse(iiiHome(env), start);
    } finally {
      await operation.release();
    }
  } finally {
    // Nothing when it got `go`; else (a check failed, a WASM worker) it ends having created nothing.
    options.standby?.abort();
  }
}

async function startChecked(name: string, spec: WorkerSpec, options: StartOptions): Promise<StartResult> {
  const env = options.env ?? process.env;
  const cwd = options.cwd ?? process.cwd();
  const homeError = writableDirError(iiiHome(env));
  if (homeError) throw new IiiError("HomeUnwritable", `III_HOME ${iiiHome(env)} is not writable: ${homeError}`);
  let status = await workerStatus(name, env, cwd);
  if (status.state === "running" || status.state === "pending") throw new IiiError("WorkerExists", `worker "${name}" is already running (pid ${status.pid})`);
  await awaitEndedSupervisor(name, env, cwd);
  status = await workerStatus(name, env, cwd);
  const paths = workerPaths(name, env, cwd);
  let cleanedCrashed = false;
  if (status.state === "crashed") {
    await cleanupStaleWorker(paths, await readVmRecord(name, env, cwd));
    cleanedCrashed = true;
  }
  // The project's workers as they are now (dev's own spec is not among them; a project without a file has none).
  const workers = await loadWorkersFile(workersFilePath(cwd)).then((f) => f.workers, () => ({}));
  assertNoDirSharedWithPreview1(name, spec, workers, cwd);
  const capturePath = options.capture === undefined ? undefined : capturePathFor(options.capture, cwd);
  if (isWasmImage(spec.image)) {
    if (capturePath) throw new IiiError("NotApplicable", "--capture does not apply to a WASM worker: it has no virtual network interface");
    await prepareWorkerDir(paths, iiiHome(env), env);
    const { startWasmWorker } = await import("./wasm/controller.js");
    options.signal?.throwIfAborted();
    options.onSupervisor?.();
    const started = await startWasmWorker(name, spec, { env, cwd, engineUrl: options.engineUrl, timeoutMs: options.bootTimeoutMs ?? 30_000 });
    return { name, pid: started.pid, timings: started.timings, cleanedCrashed, tier: "wasm" };
  }
  const { rootfs, config } = await resolveRootfs(spec.image, env, options.pull ?? "missing");
  const { kernel } = await resolveKernel({ env });
  const host: HostChoices = { ...findHost(env), kernelPath: kernel.elfPath, guestInit: findGuestInit(env) };
  policyRules(spec.network);
  await prepareWorkerDir(paths, iiiHome(env), env);
  const request: LaunchRequest = {
    name,
    cwd,
    spec,
    rootfs,
    ...(config ? { image: config } : {}),
    engineUrl: options.engineUrl,
    fresh: options.fresh ?? false,
    stopGraceMs: options.stopGraceMs ?? DEFAULT_STOP_GRACE_MS,
    bootTimeoutMs: options.bootTimeoutMs ?? DEFAULT_BOOT_TIMEOUT_MS,
    ...(capturePath ? { capturePath } : {}),
    host,
  };
  await writeFileAtomic(paths.launch, `${JSON.stringify(request, null, 2)}\n`);
  const spawnOptions = { name, projectDir: cwd, paths, env, bootTimeoutMs: request.bootTimeoutMs + 10_000 };
  // Checked in the same turn as the spawn: an abort before it means no VM, after it the caller's onSupervisor knew.
  options.signal?.throwIfAborted();
  options.onSupervisor?.();
  const report = options.standby ? await options.standby.go(spawnOptions) : await spawnSupervisor(spawnOptions);
  return { name, pid: report.pid, timings: report.timings, cleanedCrashed };
}

export interface RemoveDataOptions {
  env?: NodeJS.ProcessEnv;
  cwd?: string;
  /** Stop a running worker first instead of refusing. */
  force?: boolean;
  graceMs?: number;
  /** Keep the managed directory (upper layer, logs). */
  keepData?: boolean;
}

/**
 * What `remove` does to a worker's VM and managed state: a running worker is refused (WorkerRunning) unless
 * `force`, which stops it first; then its managed directory (upper layer, logs, sockets) is deleted, so a
 * worker re-added under the same name starts clean. Runs before the worker leaves iii.workers.yaml, so a
 * failure here leaves the file as it was.
 */
export async function removeWorkerData(name: string, options: RemoveDataOptions = {}): Promise<void> {
  const env = options.env ?? process.env;
  const cwd = options.cwd ?? process.cwd();
  const before = (await workerStatus(name, env, cwd)).state;
  if (before === "running" || before === "pending") {
    if (!options.force) {
      throw new IiiError("WorkerRunning", `worker "${name}" is running; stop it first, or use remove --force to stop and remove it`);
    }
    await stopWorker(name, { env, cwd, graceMs: options.graceMs ?? DEFAULT_STOP_GRACE_MS });
  }
  // Whatever the status says (it reads what the guest reported), a supervisor still alive per vm.json (pid + start
  // time) owns a VM, mounts and published ports: deleting its state would leave them running, out of every iii
  // command's reach (security review 2, s14 #2). One that recorded its end is releasing them: it gets a moment,
  // then is stopped like `stop` does (SIGKILL of it and its children at the end).
  const record = await readVmRecord(name, env, cwd);
  if (record && isSameProcessAlive(record)) {
    await awaitEndedSupervisor(name, env, cwd, ENDING_SUPERVISOR_WAIT_MS).catch(() => {});
    if (isSameProcessAlive(record)) await stopWorker(name, { env, cwd, graceMs: options.graceMs ?? DEFAULT_STOP_GRACE_MS });
  }
  const paths = workerPaths(name, env, cwd);
  const after = await workerStatus(name, env, cwd);
  if (after.state === "running" || after.state === "pending") throw new IiiError("WorkerRunning", `worker "${name}" did not stop (supervisor pid ${after.pid})`);
  if (after.state === "crashed") await cleanupStaleWorker(paths, await readVmRecord(name, env, cwd));
  if (!options.keepData) await removeManagedDir(paths);
}

/** How long `remove` waits for a supervisor that recorded its run's end to finish releasing, before stopping it. */
const ENDING_SUPERVISOR_WAIT_MS = 5_000;

/** Deletes a stopped worker's managed directory; refuses while anything is still mounted inside it. */
export async function removeManagedDir(paths: WorkerPaths): Promise<void> {
  for (const mountpoint of await mountsUnder(paths.dir)) await lazyUnmount(mountpoint);
  const left = await mountsUnder(paths.dir);
  if (left.length > 0) throw new IiiError("WorkerRunning", `cannot delete ${paths.dir}: ${left[0]} is still mounted`);
  await rm(paths.dir, { recursive: true, force: true });
  // A supervisor that died before its cleanup leaves QEMU's (empty) host cgroup behind.
  await removeCpuCgroup(cgroupNameFor(paths.dir));
}
