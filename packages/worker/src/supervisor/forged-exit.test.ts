// Security review 2, s14 #2: guest root can write any control frame init could, e.g. a WORKLOAD_EXIT while the VM
// keeps running. `list` then said "stopped (exit 0)" and `remove` deleted the worker's state while its supervisor,
// QEMU and published ports lived on. Real processes stand in for the supervisor and QEMU (their pid + start time
// are in vm.json); the supervisor's own runToEnd, workerStatus and removeWorkerData run against them.
import { spawn, type ChildProcess } from "node:child_process";
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { HostControl, protocol } from "@iii/init";
import { afterEach, describe, expect, it } from "vitest";
import { alive, unixSocketPair } from "../../test/stand-ins.js";
import { processStartTime } from "../host/process-identity.js";
import { removeWorkerData } from "../lifecycle.js";
import { workerPaths } from "../paths.js";
import type { VmRecord } from "../state/vm-record.js";
import { workerStatus } from "../status.js";
import type { Vmm, VmExit } from "../vmm/types.js";
import { createQemuVmm } from "../vmm/qemu-vmm.js";
import { SupervisorRun } from "./run.js";
import { runToEnd } from "./supervisor.js";

const cleanups: Array<() => void> = [];
afterEach(() => {
  for (const c of cleanups.splice(0).reverse()) c();
});

const FORGED_EXIT = { code: 0, signal: null, timedOut: false, generation: 0, oomKilled: false, requested: false, escalated: false };

/** A real long-lived process (a supervisor's or QEMU's stand-in), killed at the end of the test. */
async function standIn(): Promise<{ child: ChildProcess; pid: number; startTime: number; exited: Promise<void> }> {
  const child = spawn("sleep", ["1000"], { stdio: "ignore" });
  const exited = new Promise<void>((r) => child.once("exit", () => r()));
  cleanups.push(() => child.kill("SIGKILL"));
  const pid = child.pid!;
  let startTime: number | undefined;
  for (let i = 0; i < 100 && startTime === undefined; i++) {
    startTime = processStartTime(pid);
    if (startTime === undefined) await new Promise((r) => setTimeout(r, 5));
  }
  return { child, pid, startTime: startTime!, exited };
}

/** A project and III_HOME of its own, the worker's managed dir made, vm.json naming the stand-ins. */
async function worker(children: Array<{ name: string; pid: number; startTime: number }>, supervisor: { pid: number; startTime: number }) {
  const root = mkdtempSync(join(tmpdir(), "iii-forged-exit-"));
  cleanups.push(() => rmSync(root, { recursive: true, force: true }));
  const env = { III_HOME: join(root, "home") };
  const project = join(root, "project");
  mkdirSync(project, { recursive: true });
  const paths = workerPaths("ghost", env, project);
  mkdirSync(paths.logs, { recursive: true });
  const record: VmRecord = { pid: supervisor.pid, startTime: supervisor.startTime, vmm: "qemu", startedAt: new Date(Date.now() - 1000).toISOString(), children };
  writeFileSync(paths.vmJson, JSON.stringify(record));
  return { env, project, paths, record };
}

function forgeLastExit(path: string): void {
  writeFileSync(path, JSON.stringify({ code: 0, reason: "workload exited with 0", endedAt: new Date().toISOString() }));
}


describe("a WORKLOAD_EXIT forged by the guest while its VM runs", () => {
  it("is not recorded while the VM is up (list says running); a VM that does not reboot is stopped, then recorded", async () => {
    const supervisor = await standIn();
    const qemu = await standIn();
    const { env, project, paths, record } = await worker([{ name: "qemu", pid: qemu.pid, startTime: qemu.startTime }], supervisor);
    const run = new SupervisorRun("ghost", paths, env, createQemuVmm);
    run.record = record;
    run.rebootAfterExitMs = 400;
    let endVm!: (exit: VmExit) => void;
    const vmEnded = new Promise<VmExit>((r) => (endVm = r));
    let stops = 0;
    run.vmm = {
      wait: () => vmEnded,
      stop: async () => {
        stops += 1;
        qemu.child.kill("SIGKILL");
        await qemu.exited;
        const exit: VmExit = { reason: "host-qmp-quit", exitCode: 0, signal: null, events: [], uptimeMs: 1 };
        endVm(exit);
        return exit;
      },
    } as unknown as Vmm;
    const [hostSock, guestSock] = await unixSocketPair(join(paths.dir, "control.sock"), (close) => cleanups.push(close));
    run.control = HostControl.attach(hostSock);
    run.control.on("error", () => {});
    cleanups.push(() => run.control?.close());
    const ended = runToEnd(run);

    guestSock.write(protocol.encodeFrame({ type: protocol.FrameType.WORKLOAD_EXIT, stream: 0, payload: Buffer.from(JSON.stringify(FORGED_EXIT)) }));
    await new Promise((r) => setTimeout(r, 150));
    expect(run.workloadExit?.code).toBe(0);
    expect(existsSync(paths.lastExit)).toBe(false);
    const during = await workerStatus("ghost", env, project);
    expect(during.state).toBe("running");
    expect(during.pid).toBe(supervisor.pid);

    // Init did not reboot after "its" workload's exit: the supervisor stops the VM and records why.
    expect(await ended).toBe(0);
    expect(stops).toBe(1);
    expect(alive(qemu.pid)).toBe(false);
    const lastExit = JSON.parse(readFileSync(paths.lastExit, "utf8")) as { reason: string };
    expect(lastExit.reason).toMatch(/did not end within 400 ms of its workload's exit/);
    // The supervisor (still alive here, releasing) has seen its VM end: now the worker has ended.
    expect((await workerStatus("ghost", env, project)).state).toBe("stopped");
  });

  it("a last exit recorded while QEMU still runs does not make list say stopped", async () => {
    const supervisor = await standIn();
    const qemu = await standIn();
    const { env, project, paths } = await worker([{ name: "qemu", pid: qemu.pid, startTime: qemu.startTime }], supervisor);
    forgeLastExit(paths.lastExit);
    const status = await workerStatus("ghost", env, project);
    expect(status.state).toBe("running");
    expect(status.pid).toBe(supervisor.pid);
    expect(status.lastExit?.reason).toBe("workload exited with 0");
  });

  it("remove refuses a worker whose VM is up (no orphan, nothing deleted); --force stops it, then deletes", async () => {
    const supervisor = await standIn();
    const qemu = await standIn();
    const { env, project, paths } = await worker([{ name: "qemu", pid: qemu.pid, startTime: qemu.startTime }], supervisor);
    forgeLastExit(paths.lastExit);
    await expect(removeWorkerData("ghost", { env, cwd: project })).rejects.toMatchObject({ code: "WorkerRunning" });
    expect(existsSync(paths.vmJson)).toBe(true);
    expect(alive(supervisor.pid) && alive(qemu.pid)).toBe(true);

    await removeWorkerData("ghost", { env, cwd: project, force: true, graceMs: 100 });
    await Promise.race([Promise.all([supervisor.exited, qemu.exited]), new Promise((r) => setTimeout(r, 2000))]);
    expect(alive(supervisor.pid)).toBe(false);
    expect(alive(qemu.pid)).toBe(false);
    expect(existsSync(paths.dir)).toBe(false);
  });

  it("remove stops a supervisor that is still alive before deleting its state, whatever the status says", async () => {
    // Its QEMU is gone (status "stopped", from the last exit), but the supervisor lives on: it owns mounts, the
    // network stack and published ports. Deleting vm.json under it would leave it out of every command's reach.
    const supervisor = await standIn();
    const { env, project, paths } = await worker([], supervisor);
    forgeLastExit(paths.lastExit);
    expect((await workerStatus("ghost", env, project)).state).toBe("stopped");
    await removeWorkerData("ghost", { env, cwd: project, graceMs: 100 });
    await Promise.race([supervisor.exited, new Promise((r) => setTimeout(r, 2000))]);
    expect(alive(supervisor.pid)).toBe(false);
    expect(existsSync(paths.dir)).toBe(false);
  }, 30_000);
});
