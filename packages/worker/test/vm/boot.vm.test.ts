import { readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { isIiiError } from "../../src/errors.js";
import { QemuVmm, chooseAccel, probeAccelFacts } from "../../src/vmm/index.js";
import { processStartTime } from "../../src/host/process-identity.js";
import { INIT_PRELUDE, INIT_REBOOT, VmTestResources, rootfsWithInit, vmTestEnv, type VmTestEnv } from "./harness.js";

const env = await vmTestEnv();
if ("skip" in env) console.warn(`SKIP VM boot tests: ${env.skip}`);

describe.skipIf("skip" in env)("QemuVmm boots the libkrunfw kernel on a busybox virtio-fs root (TCG)", () => {
  const { kernelPath, busyboxRootfs } = env as VmTestEnv;
  const res = new VmTestResources();
  afterAll(() => res.release());

  it("prints the init's line to the console and exits on the guest's reboot", async () => {
    const dir = res.dir("boot");
    const root = rootfsWithInit(
      busyboxRootfs,
      dir,
      `${INIT_PRELUDE}\necho "iii-hello pid=$$ value=[$III_TEST_VALUE] extra=$(cat /proc/cmdline | grep -o iii.test=on)"\n${INIT_REBOOT}`,
    );
    const vm = res.track(
      new QemuVmm({
        name: "boot",
        kernelPath,
        root: { tag: "rootfs", hostDir: root },
        vcpus: 1,
        memoryBytes: 256 * 1024 * 1024,
        consoleLogPath: join(dir, "console.log"),
        runDir: join(dir, "run"),
        accel: "tcg",
        cmdlineExtra: ["iii.test=on"],
        env: { III_TEST_VALUE: "two words" },
      }),
    );
    const started = performance.now();
    await vm.start();
    const procs = vm.processes();
    expect(procs.map((p) => p.role).sort()).toEqual(["qemu", "virtiofsd"]);
    for (const p of procs) expect(p.startTime).toBe(processStartTime(p.pid));

    const { line } = await vm.waitForConsole(/iii-hello/, 60_000);
    const firstLineMs = performance.now() - started;
    expect(line).toContain("pid=1");
    expect(line).toContain("value=[two words]");
    expect(line).toContain("extra=iii.test=on");

    const exit = await vm.wait();
    const totalMs = performance.now() - started;
    expect(exit.reason).toBe("guest-reset");
    expect(exit.exitCode).toBe(0);
    console.log(`boot: first console line ${firstLineMs.toFixed(0)} ms, QEMU exit ${totalMs.toFixed(0)} ms (virtiofsd ready ${vm.timings.virtiofsdReadyMs?.toFixed(0)} ms, QMP ${vm.timings.qmpReadyMs?.toFixed(0)} ms)`);
    await vm.cleanup();
    expect(vm.processes()).toEqual([]);
    for (const p of procs) expect(processStartTime(p.pid)).toBeUndefined();
  }, 90_000);

  it("stop() ends a guest that never exits and kills virtiofsd; an appended console only matches this run", async () => {
    const dir = res.dir("stop");
    const root = rootfsWithInit(busyboxRootfs, dir, `${INIT_PRELUDE}\necho iii-sleeping\nwhile true; do sleep 1; done`);
    writeFileSync(join(dir, "console.log"), "iii-sleeping (a previous run)\n");
    const vm = res.track(
      new QemuVmm({ name: "stop", kernelPath, root: { tag: "rootfs", hostDir: root }, vcpus: 1, memoryBytes: 128 * 1024 * 1024, consoleLogPath: join(dir, "console.log"), consoleAppend: true, runDir: join(dir, "run"), accel: "tcg" }),
    );
    await vm.start();
    const procs = vm.processes();
    const { line } = await vm.waitForConsole(/iii-sleeping/, 60_000);
    expect(line).toBe("iii-sleeping");
    expect(readFileSync(join(dir, "console.log"), "utf8")).toMatch(/^iii-sleeping \(a previous run\)\n/);
    const exit = await vm.stop({ timeoutMs: 3_000 });
    expect(exit.reason).toBe("host-qmp-quit");
    for (const p of procs) expect(processStartTime(p.pid)).toBeUndefined();
  }, 90_000);

  it("QEMU refusing to start (a kernel that is not one) is VmBootFailed quoting QEMU, with nothing left running", async () => {
    const dir = res.dir("badk");
    const root = rootfsWithInit(busyboxRootfs, dir, INIT_REBOOT);
    const badKernel = join(dir, "bad.elf");
    writeFileSync(badKernel, "not a kernel at all");
    const vm = res.track(
      new QemuVmm({ name: "badk", kernelPath: badKernel, root: { tag: "rootfs", hostDir: root }, vcpus: 1, memoryBytes: 128 * 1024 * 1024, consoleLogPath: join(dir, "console.log"), runDir: join(dir, "run"), accel: "tcg" }),
    );
    const error = await vm.start().catch((e: unknown) => e);
    expect(isIiiError(error, "VmBootFailed"), String(error)).toBe(true);
    expect((error as Error).message).toMatch(/QEMU exited during start-up: qemu: invalid kernel header/);
    expect(vm.processes()).toEqual([]);
  }, 60_000);

  const hostAccel = chooseAccel(probeAccelFacts({}));
  if (hostAccel.accel === "kvm") console.warn("SKIP forced-KVM failure test: KVM works on this host");
  it.skipIf(hostAccel.accel === "kvm")("forcing KVM where it cannot run guests gives KvmUnavailable with QEMU's reason", async () => {
    const dir = res.dir("kvm");
    const root = rootfsWithInit(busyboxRootfs, dir, `echo iii-kvm-hello\n${INIT_REBOOT}`);
    const vm = res.track(
      new QemuVmm({ name: "kvm", kernelPath, root: { tag: "rootfs", hostDir: root }, vcpus: 1, memoryBytes: 128 * 1024 * 1024, consoleLogPath: join(dir, "console.log"), runDir: join(dir, "run"), hostEnv: { ...process.env, III_ACCEL: "kvm" } }),
    );
    await vm.prepare();
    expect(vm.accel.accel).toBe("kvm");
    const error = await (async () => {
      await vm.start();
      await vm.waitForConsole(/iii-kvm-hello/, 60_000);
    })().catch((e: unknown) => e);
    expect(isIiiError(error, "KvmUnavailable"), String(error)).toBe(true);
    expect((error as Error).message).toMatch(/III_ACCEL=kvm/);
    expect((error as Error).message).toMatch(/use III_ACCEL=tcg/);
    console.log(`forced KVM: ${(error as Error).message}`);
  }, 90_000);

  it("a guest whose init fails gives VmBootFailed with the console tail", async () => {
    const dir = res.dir("fail");
    const root = rootfsWithInit(busyboxRootfs, dir, "echo iii-about-to-fail\nexit 3");
    const vm = res.track(
      new QemuVmm({ name: "fail", kernelPath, root: { tag: "rootfs", hostDir: root }, vcpus: 1, memoryBytes: 128 * 1024 * 1024, consoleLogPath: join(dir, "console.log"), runDir: join(dir, "run"), accel: "tcg" }),
    );
    await vm.start();
    const error = await vm.waitForConsole(/never printed/, 60_000).catch((e: unknown) => e);
    expect(isIiiError(error, "VmBootFailed")).toBe(true);
    expect((error as Error).message).toContain("iii-about-to-fail");
    expect((error as Error).message).toMatch(/the VM ended \(guest-(reset|panic)\)/);
    // init exiting panics the kernel; panic=-1 turns that into a reset, which ends QEMU. The panic text
    // itself usually never reaches hvc0 (the reboot is immediate), so the reason is guest-reset or -panic.
    const exit = await vm.wait();
    expect(["guest-reset", "guest-panic"]).toContain(exit.reason);
  }, 90_000);
});
