import { mkdir, readFile, rm } from "node:fs/promises";
import { join } from "node:path";
import { setTimeout as sleep } from "node:timers/promises";
import type { MountServer } from "@iii/filesystem/client";
import { HostControl, type ReadyMessage } from "@iii/init";
import { errnoCode, IiiError, toIiiError } from "../errors.js";
import { tryHoldFileLock, withFileLock } from "../host/file-lock.js";
import { processStartTime } from "../host/process-identity.js";
import { leanVm } from "../images/lean-vm.js";
import { planVm } from "../launch/plan.js";
import { ReadyPipe } from "../launch/ready-pipe.js";
import type { LaunchRequest } from "../launch/request.js";
import { managedRoot as managedRootOf, workerPaths } from "../paths.js";
import type { VmRecord } from "../state/vm-record.js";
import type { RotatingLog } from "../util/rotating-log.js";
import { consoleLinesSince, consoleMark, consoleTextSince, kernelPanicSummary, type ConsoleMark } from "../vmm/console-log.js";
import { createQemuVmm } from "../vmm/qemu-vmm.js";
import type { VmmFactory } from "../vmm/types.js";
import { cleanupStaleWorker } from "./cleanup.js";
import { installFatalTeardown } from "./fatal.js";
import { healthOptionsFrom, watchHealth } from "./health.js";
import { runPhases } from "./phases/index.js";
import { budgetedLog, guestLogBudget } from "./guest-log.js";
import { collectGarbage, trimWhenIdle } from "./idle-trim.js";
import { log, SupervisorRun } from "./run.js";
import { allocateSlot } from "./slots.js";

/**
 * The supervisor of one VM (entry: supervisor/main.ts), in its own session. Reads the launch request, plans the VM
 * (launch/plan.ts), runs the boot phases (phases/: mount, network, api, control, vmm), reports the boot
 * outcome on the ready pipe, streams the workload's output to the log files, records the exit, and has the
 * run's one cleanup owner undo what ran, on any exit.
 */
export async function runSupervisor(
  name: string,
  projectDir: string,
  env: NodeJS.ProcessEnv = process.env,
  createVmm: VmmFactory = createQemuVmm,
  rootServer?: MountServer,
  /** Started in standby (main.ts): when its code was loaded and it began to wait for `go`, in ms since its start. */
  standbyMs?: number,
): Promise<number> {
  // No optimizing compilers until READY (see lean-vm.ts): the boot's code runs once, and their pages stay out of RSS.
  const releaseLean = leanVm();
  const paths = workerPaths(name, env, projectDir);
  const ready = new ReadyPipe(env.III_READY_FD ? Number(env.III_READY_FD) : undefined);
  const run = new SupervisorRun(name, paths, env, createVmm);
  if (standbyMs !== undefined) run.timings.standby = standbyMs;
  run.mark("load");
  if (rootServer) {
    run.rootServer = rootServer;
    run.resources.add("unused FUSE server", () => rootServer.dispose());
  }
  for (const signal of ["SIGTERM", "SIGINT", "SIGHUP"] as const) process.on(signal, () => void run.requestStop(signal));
  installFatalTeardown(run);
  let consoleFrom: ConsoleMark | undefined;

  try {
    await mkdir(paths.logs, { recursive: true });
    const lock = await tryHoldFileLock(paths.lock);
    if (!lock) throw new IiiError("VmBootFailed", `worker "${name}" is already running (its lock is held)`);
    run.resources.add("worker lock", () => lock.release());
    // Taken before the control phase opens the log for this run's console: a failure quotes only what follows.
    consoleFrom = consoleMark(paths.consoleLog);
    run.consoleFrom = consoleFrom;

    const request = JSON.parse(await readFile(paths.launch, "utf8")) as LaunchRequest;
    run.request = request;
    const health = healthOptionsFrom(env);
    const previous = await readFile(paths.vmJson, "utf8").then((t) => JSON.parse(t) as VmRecord).catch(() => undefined);
    const cleaned = await cleanupStaleWorker(paths, previous);
    if (cleaned.length > 0) log(`cleaned up after a crashed run: ${cleaned.join(", ")}`);

    const managedRoot = managedRootOf(env);
    run.record = {
      pid: process.pid,
      startTime: processStartTime(process.pid) ?? 0,
      vmm: "qemu",
      startedAt: new Date().toISOString(),
      sockets: { api: paths.apiSock, control: paths.controlSock, net: paths.netSock, qmp: join(paths.runtime, "qmp.sock") },
      children: [],
    };
    const slot = await withFileLock(join(managedRoot, ".slots.lock"), async () => {
      const s = await allocateSlot(managedRoot);
      run.record.slot = s;
      await run.writeRecord();
      return s;
    });
    run.resources.add("vm.json", () => rm(paths.vmJson, { force: true }));

    const dnsUpstreams = env.III_DNS_UPSTREAM?.split(",").map((u) => u.trim()).filter(Boolean);
    run.plan = planVm(request, { slot, paths, ...(dnsUpstreams ? { dnsUpstreams } : {}) });
    // III_TCG_TB_SIZE_MIB: the TCG translation cache for this host's VMs (default TCG_TB_SIZE_MIB).
    if (env.III_TCG_TB_SIZE_MIB) run.plan.vm.tcgTbSizeMiB = Number(env.III_TCG_TB_SIZE_MIB);
    // III_GUEST_KERNEL_ARGS: words added to the guest kernel's command line, to diagnose a guest (`loglevel=8`,
    // `initcall_debug`); the host user's setting, never the guest's. Checked like every word (qemu-argv.ts).
    const kernelArgs = env.III_GUEST_KERNEL_ARGS?.split(/\s+/).filter(Boolean) ?? [];
    if (kernelArgs.length > 0) run.plan.vm.cmdlineExtra = [...(run.plan.vm.cmdlineExtra ?? []), ...kernelArgs];
    const { launch, addresses } = run.plan;
    log(`booting ${name}: slot ${slot} (guest ${addresses.guest}), ${launch.vcpus} vCPU, ${launch.memoryBytes} bytes of memory, ${launch.diskBytes} bytes of writable root, argv ${JSON.stringify(launch.argv)}`);
    run.mark("plan");

    await runPhases(run);
    const readyMessage = await awaitReady(run, request);
    run.mark("ready");
    run.readyAt = Date.now();
    releaseLean();
    ready.report({ event: "ready", pid: process.pid, origin: performance.timeOrigin, timings: { ...run.timings, ...guestTimings(readyMessage) } });
    log(`ready in ${run.timings.ready} ms`);
    // Tells a client that cannot reach the API socket from now on that it is gone, not yet to come (api/client.ts).
    run.record.guestReadyAt = new Date(run.readyAt).toISOString();
    await run.writeRecord().catch((error: Error) => log(`vm.json: ${error.message}`));
    run.resources.add("health watch", watchHealth(run.control!, paths.health, health, log));
    run.resources.add("idle heap trim", trimWhenIdle({ trim: () => trimHeaps(run), onError: (error) => log(`idle heap trim: ${error.message}`) }));
    return await runToEnd(run);
  } catch (error) {
    // Another package's typed error (FilesystemError, NetworkError) keeps its code to the CLI line.
    let iii = toIiiError(error, "VmBootFailed");
    // A stop while booting ends the VM on purpose (requestStop): that, not the VM's end, is the start's outcome.
    if (run.stopRequested && !run.crash && run.readyAt === undefined) iii = new IiiError("VmBootFailed", `worker "${name}" was stopped while booting`, { cause: error });
    const panic = consoleFrom && run.vmm && !run.stopRequested ? await guestKernelDeath(paths.consoleLog, consoleFrom, [0, 200]) : undefined;
    if (panic) iii = new IiiError(iii.code, `${iii.message}; ${panic}`, { cause: iii });
    log(`failed: ${iii.message}${errnoCode(error) ? ` (${errnoCode(error)})` : ""}\n${(error as Error).stack ?? ""}`);
    const startFailed = iii.code === "WorkloadStartFailed";
    // Init's last words (the failed spawn, its exit) reach the console while QEMU is still going down.
    if (startFailed) await Promise.race([run.vmm?.wait(), sleep(2_000, undefined, { ref: false })]);
    // This run's lines only (the log keeps earlier runs); none before this run held the worker's lock.
    const consoleLines = consoleFrom ? consoleLinesSince(paths.consoleLog, consoleFrom, 15) : [];
    const consoleTail = consoleLines.slice(-15).join("\n");
    ready.report({ event: "failed", code: iii.code, message: iii.message, consoleTail: startFailed ? consoleLines.slice(-5).join("\n") : consoleTail });
    // The VM goes first: a last exit recorded while QEMU still runs does not end the worker's status (status.ts).
    await run.vmm?.stop({ timeoutMs: 2_000 }).catch(() => {});
    if (!run.lastExitWritten || run.crash) {
      const extra = startFailed ? { startFailed: true, consoleTail: consoleLines.slice(-5) } : {};
      await run.writeLastExit(run.workloadExit, undefined, run.crash ?? iii.message, run.crash !== undefined, extra).catch(() => {});
    }
    return 1;
  } finally {
    releaseLean();
    run.control?.close();
    await run.resources.releaseAll();
  }
}

/** One full GC here and in each FUSE server still mounted (see trimWhenIdle). */
async function trimHeaps(run: SupervisorRun): Promise<void> {
  collectGarbage();
  await Promise.all(run.mounts.filter((mount) => mount.mounted).map((mount) => mount.memoryAfterGc()));
}

/** Attaches the control channel once the guest connects, and waits for init's READY and the workload's start. */
async function awaitReady(run: SupervisorRun, request: LaunchRequest): Promise<ReadyMessage> {
  const { name } = run;
  const vm = run.vmm!;
  const vmEnded = vm.wait();
  const socket = await Promise.race([run.controlConnected, vmEnded.then(() => undefined)]);
  if (!socket) {
    const exit = await vmEnded;
    throw exit.error ?? vm.failure ?? new IiiError("VmBootFailed", `VM of "${name}" ended before its control port connected (${exit.reason})`);
  }
  const hc = HostControl.attach(socket);
  run.control = hc;
  const guestLog = budgetedLog(log, { budgetBytes: guestLogBudget(run.env) });
  hc.on("error", (error) => guestLog(`control: ${error.message}`));
  // Listening before READY: WORKLOAD_STARTED (or init's failure to spawn) follows READY in the same read.
  const workloadOutcome = new Promise<{ started: true } | { failed: string }>((resolve) => {
    hc.once("workloadStarted", () => resolve({ started: true }));
    hc.on("guestError", (m) => m.code === "INIT_FAILED" && resolve({ failed: m.message.replace(/ \(exit \d+\)$/, "") }));
  });
  logWorkloadOutput(hc, { stdout: run.stdoutLog, stderr: run.stderrLog });
  hc.on("log", (m) => guestLog(`guest: ${JSON.stringify(m)}`));

  const readyMessage = (await Promise.race([
    hc.ready,
    vmEnded.then((exit): never => {
      throw exit.error ?? vm.failure ?? new IiiError("VmBootFailed", `VM of "${name}" ended before init reported READY (${exit.reason})`);
    }),
    sleep(request.bootTimeoutMs, undefined, { ref: false }).then((): never => {
      throw new IiiError("VmBootFailed", `init of "${name}" did not report READY within ${request.bootTimeoutMs / 1000} s`);
    }),
  ])) as ReadyMessage;
  // "ready" means the workload runs: a command that cannot be spawned fails the start, with init's reason.
  const outcome = await Promise.race([
    workloadOutcome,
    vmEnded.then((exit) => ({ failed: `the VM ended before its workload started (${exit.reason})` })),
    sleep(request.bootTimeoutMs, undefined, { ref: false }).then(() => ({ failed: `init did not start the workload within ${request.bootTimeoutMs / 1000} s` })),
  ]);
  if ("failed" in outcome) throw new IiiError("WorkloadStartFailed", `worker "${name}" failed to start: ${outcome.failed}`);
  return readyMessage;
}

/**
 * The workload's stdout and stderr (stream 0) into their rotating logs. Each source is paused while its write
 * settles, as the console's socket is: a workload printing faster than the disk takes it waits for its credit,
 * instead of the supervisor queueing writes (which once raced the log's rotation: hidden files, leaked fds).
 */
export function logWorkloadOutput(hc: HostControl, logs: { stdout: RotatingLog; stderr: RotatingLog }): void {
  logs.stdout.follow(hc.workloadStdout);
  logs.stderr.follow(hc.workloadStderr);
}

/**
 * Waits for the VM's end and records it: 0 for an orderly end, 1 when the run crashed. The workload's exit is the
 * guest's word, so it is recorded (last-exit.json, which `list` reads) only once the host saw the VM end: a
 * WORKLOAD_EXIT forged by guest root (it can write on init's port) must not make `list` say stopped while the VM
 * runs (security review 2, s14 #2). Init reboots right after its workload's exit; a VM still up
 * `run.rebootAfterExitMs` later is stopped.
 */
export async function runToEnd(run: SupervisorRun): Promise<number> {
  const hc = run.control!;
  const vmEnded = run.vmm!.wait();
  let notRebooted: string | undefined;
  hc.workloadExit.then(
    (exit) => {
      run.workloadExit = exit;
      if (run.stopRequested) return;
      const timer = setTimeout(() => {
        notRebooted = `the VM did not end within ${run.rebootAfterExitMs} ms of its workload's exit (code ${exit.code}): stopped`;
        log(notRebooted);
        void run.vmm?.stop({ timeoutMs: 2_000 }).catch(() => {});
      }, run.rebootAfterExitMs);
      timer.unref();
      vmEnded.then(() => clearTimeout(timer), () => clearTimeout(timer));
    },
    () => {},
  );
  const exit = await vmEnded;
  // WORKLOAD_EXIT precedes the reboot; give it a moment if the frames raced QEMU's exit.
  if (!run.workloadExit) await sleep(50);
  if (!run.crash && !run.stopRequested && !exit.error && !run.workloadExit) {
    // QEMU ended (a SIGTERM from outside exits 0, a guest panic resets) without the workload's end: not a stop.
    // A kernel panic ends QEMU as a reset (panic=-1), or as guest-panic when QEMU saw it: worth a longer look.
    const looks = exit.reason === "guest-panic" ? [0, 200, 800] : exit.reason === "guest-reset" ? [0, 200] : [0];
    const panic = run.consoleFrom ? await guestKernelDeath(run.paths.consoleLog, run.consoleFrom, looks) : undefined;
    run.childDied(`the VM ended without its workload exiting (${exit.reason}${exit.signal ? `, QEMU got ${exit.signal}` : ""})${panic ? `; ${panic}` : ""}`);
  }
  if (!run.crash && exit.error && !run.stopRequested) {
    run.childDied(`QEMU (pid ${run.record.children?.find((p) => p.name === "qemu")?.pid ?? "?"}) ${exit.signal ? `died of ${exit.signal}` : `failed: ${exit.error.message}`}`);
  }
  if (run.crash) {
    run.execs?.abortAll(`worker "${run.name}" crashed: ${run.crash}`);
    await run.writeLastExit(run.workloadExit, exit, run.crash, true);
    log(`VM ended: crashed: ${run.crash}`);
    return 1;
  }
  await sleep(50);
  if (!run.lastExitWritten) await run.writeLastExit(run.workloadExit, exit, notRebooted);
  log(`VM ended: ${exit.reason}`);
  return 0;
}

function guestTimings(ready: ReadyMessage): Record<string, number> {
  const out: Record<string, number> = {};
  out["guest:boot"] = ready.bootMs;
  for (const step of ready.timings) out[`guest:${step.step}`] = step.ms;
  return out;
}

/**
 * "the guest kernel panicked: <its oops and panic lines>" when this run's console shows the kernel's death, looked
 * for after each of `waitsMs`: the console reaches its log through this process (phases/control.ts), so a dying
 * kernel's last lines may still be on their way when QEMU's exit is seen.
 */
async function guestKernelDeath(consoleLog: string, from: ConsoleMark, waitsMs: number[]): Promise<string | undefined> {
  for (const ms of waitsMs) {
    if (ms > 0) await sleep(ms);
    const summary = kernelPanicSummary(consoleTextSince(consoleLog, from));
    if (summary) return `the guest kernel panicked: ${summary}`;
  }
  return undefined;
}
