import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { isIiiError, type IiiError } from "../errors.js";
import { QemuVmm, type QemuVmmOptions } from "./qemu-vmm.js";

const dir = mkdtempSync(join(tmpdir(), "iii-qvmm-"));
afterAll(() => rmSync(dir, { recursive: true, force: true }));
const kernel = join(dir, "kernel.elf");
writeFileSync(kernel, "elf");
const root = join(dir, "root");
mkdirSync(root);
const fakeBin = join(dir, "bin");
writeFileSync(fakeBin, "#!/bin/sh\n", { mode: 0o755 });

function options(overrides: Partial<QemuVmmOptions> = {}): QemuVmmOptions {
  return {
    name: "unit",
    kernelPath: kernel,
    root: { tag: "rootfs", hostDir: root },
    vcpus: 2,
    memoryBytes: 256 * 1024 * 1024,
    consoleLogPath: join(dir, "logs", "console.log"),
    runDir: join(dir, "run"),
    accel: "tcg",
    tscKhz: 2_000_000,
    qemuPath: fakeBin,
    virtiofsdPath: fakeBin,
    ...overrides,
  };
}

async function prepareError(overrides: Partial<QemuVmmOptions>): Promise<{ code: IiiError["code"] | undefined; message: string }> {
  const error = await new QemuVmm(options(overrides)).prepare().then(
    () => undefined,
    (e: unknown) => e,
  );
  return { code: isIiiError(error) ? error.code : undefined, message: String((error as Error | undefined)?.message) };
}

describe("QemuVmm.prepare", () => {
  it("computes the qemu and virtiofsd command lines without spawning anything", async () => {
    const vm = new QemuVmm(options({ shares: [{ tag: "data", hostDir: root, readOnly: true }], env: { III_WORKER_CMD: "sh -c 'echo hi'" } }));
    await vm.prepare();
    const [bin, ...argv] = vm.qemuCommand;
    expect(bin).toBe(fakeBin);
    const append = argv[argv.indexOf("-append") + 1];
    expect(append).toContain("tsc_early_khz=2000000");
    expect(append).toContain(`III_WORKER_CMD="sh -c 'echo hi'"`);
    expect(argv).toContain(`socket,id=qmp,path=${join(dir, "run", "qmp.sock")},server=on,wait=off`);
    expect(vm.virtiofsdCommands).toHaveLength(2);
    expect(vm.virtiofsdCommands[0]![0]).toBe(fakeBin);
    expect(vm.virtiofsdCommands[1]![0]).toBe("unshare");
    expect(vm.processes()).toEqual([]);
    await vm.cleanup();
  });

  it("names what is missing or wrong", async () => {
    expect(await prepareError({ qemuPath: join(dir, "no-qemu") })).toMatchObject({ code: "QemuNotFound" });
    expect(await prepareError({ virtiofsdPath: join(dir, "no-virtiofsd") })).toMatchObject({ code: "VirtiofsdNotFound" });
    expect(await prepareError({ kernelPath: join(dir, "no-kernel") })).toMatchObject({ code: "FirmwareNotFound" });
    expect(await prepareError({ root: { tag: "rootfs", hostDir: join(dir, "no-root") } })).toMatchObject({ code: "RootfsNotFound" });
    expect(await prepareError({ shares: [{ tag: "rootfs", hostDir: root }] })).toMatchObject({ code: "InvalidOption", message: expect.stringContaining("used twice") });
    expect(await prepareError({ shares: [{ tag: "data", hostDir: join(dir, "nope") }] })).toMatchObject({ code: "InvalidOption" });
    expect(await prepareError({ runDir: join(dir, "x".repeat(120)) })).toMatchObject({ code: "InvalidOption", message: expect.stringContaining("longer than 107 bytes") });
  });

  it("takes the accel from III_ACCEL when the caller does not choose, keeping the host probe's reason", async () => {
    const vm = new QemuVmm(options({ accel: undefined, hostEnv: { ...process.env, III_ACCEL: "kvm" } }));
    await vm.prepare();
    expect(vm.accel.accel).toBe("kvm");
    expect(vm.accel.reason).toMatch(/^III_ACCEL=kvm; host probe: /);
    const argv = vm.qemuCommand;
    expect(argv[argv.indexOf("-cpu") + 1]).toBe("host");
    expect(argv[argv.indexOf("-append") + 1]).not.toContain("tsc_early_khz");
    await vm.cleanup();
  });

  it("stop() and cleanup() before start() are harmless", async () => {
    const vm = new QemuVmm(options());
    expect((await vm.stop()).reason).toBe("not-started");
    await vm.cleanup();
    await expect(vm.wait()).rejects.toThrow(/not started/);
  });
});
