import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, expect, it } from "vitest";
import { chooseAccel } from "../../src/vmm/accel.js";
import { runWorkerCli } from "../helpers.js";

let dir: string;
beforeAll(() => {
  dir = mkdtempSync(join(tmpdir(), "iii-doctor-"));
});
afterAll(() => rmSync(dir, { recursive: true, force: true }));

it("picks KVM only with vmx/svm and an openable /dev/kvm", () => {
  expect(chooseAccel({ hardwareVirtualization: "vmx", paravirtualKvm: false, devKvmOpens: true }).accel).toBe("kvm");
  expect(chooseAccel({ hardwareVirtualization: undefined, paravirtualKvm: true, devKvmOpens: true })).toMatchObject({
    accel: "tcg",
    reason: expect.stringContaining("kvm_pvm"),
  });
  expect(chooseAccel({ hardwareVirtualization: "svm", paravirtualKvm: false, devKvmOpens: false, devKvmError: "EACCES" })).toMatchObject({
    accel: "tcg",
    reason: expect.stringContaining("EACCES"),
  });
  expect(chooseAccel({ hardwareVirtualization: undefined, paravirtualKvm: false, devKvmOpens: false, override: "kvm" }).accel).toBe("kvm");
});

it("doctor --json reports every check with a verdict, and its exit status follows canRunVm", async () => {
  const run = await runWorkerCli(["doctor", "--json"], { cwd: dir, env: { III_HOME: join(dir, "home") } });
  const report = JSON.parse(run.stdout) as { checks: { name: string; verdict: string; detail: string }[]; canRunVm: boolean; accel: string };
  const names = report.checks.map((c) => c.name);
  for (const name of ["virtualisation", "accel", "qemu", "virtiofsd", "/dev/fuse", "libfuse2", "filesystem shim", "fusermount", "/dev/net/tun", "firmware", "III_HOME", "wasm"]) {
    expect(names).toContain(name);
  }
  // Built here (the bootstrap has a C compiler): the --disk bound can be kept, and doctor says which file keeps it.
  expect(report.checks.find((c) => c.name === "filesystem shim")).toMatchObject({ verdict: "ok", required: true, detail: expect.stringMatching(/libiii-setattr-shim\.so$/) });
  for (const c of report.checks) expect(["ok", "warn", "fail"]).toContain(c.verdict);
  // the WASM tier needs no virtualisation: node:wasi + the permission model, jco + preview2-shim for preview 2
  expect(report.checks.find((c) => c.name === "wasm")).toMatchObject({ verdict: "ok", detail: expect.stringMatching(/preview 1 on node:wasi.*preview 2 via jco \d.*preview2-shim 0\.26\.1/) });
  expect((report as unknown as { canRunWasm: boolean }).canRunWasm).toBe(true);
  expect(run.code).toBe(report.canRunVm ? 0 : 1);
  const hasVmx = /\b(vmx|svm)\b/.test((await import("node:fs")).readFileSync("/proc/cpuinfo", "utf8"));
  if (!hasVmx && !process.env.III_ACCEL) expect(report.accel).toBe("tcg");
});

it("doctor reports an unwritable III_HOME", async () => {
  const file = join(dir, "a-file");
  writeFileSync(file, "");
  const run = await runWorkerCli(["doctor", "--json"], { cwd: dir, env: { III_HOME: join(file, "home") } });
  const report = JSON.parse(run.stdout) as { checks: { name: string; verdict: string; detail: string }[] };
  const home = report.checks.find((c) => c.name === "III_HOME")!;
  expect(home.verdict).toBe("fail");
  expect(home.detail).toContain("not a directory");
  expect(run.code).toBe(1);
});
