import { chmodSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { busyboxRootfs, mountsUnder, processesMentioning, Project, vmSkipReason, waitFor } from "./harness.js";

const skip = vmSkipReason();
if (skip) console.warn(`[vm] skipping the failed-boot console test: ${skip}`);

describe.skipIf(!!skip)("a failed boot quotes only its own console (vm)", () => {
  let rootfs: string;
  const p = new Project();
  beforeAll(() => {
    rootfs = busyboxRootfs();
  }, 300_000);
  afterAll(() => p.dispose());

  it("the previous run's last console line is not in the next failed start's message", async () => {
    expect((await p.cli(["add", `dir:${rootfs}`, "--name", "twice", "--", "sh", "-c", "echo up; exec sleep 1000"])).code).toBe(0);
    const first = await p.cli(["start", "twice"]);
    expect(first.code, first.stderr).toBe(0);
    expect((await p.cli(["stop", "twice"])).code).toBe(0);
    // init's word on the stopped workload is the console's last line now
    expect(p.read("managed/twice/logs/console.log")).toContain("workload exited with signal SIGTERM");
    // a QEMU that fails at once: this run's console stays empty
    const fake = join(p.dir, "fake-qemu");
    writeFileSync(fake, "#!/bin/sh\necho fake qemu refuses >&2\nexit 1\n");
    chmodSync(fake, 0o755);
    const second = await p.cli(["start", "twice"], { III_QEMU_BIN: fake });
    expect(second.code).toBe(1);
    expect(second.stderr).toContain("fake qemu refuses");
    expect(second.stderr).not.toContain("workload exited with signal SIGTERM");
    expect(second.stderr).not.toContain("(console:");
    // the failed start's supervisor releases its mounts after it reported the failure
    await waitFor(() => mountsUnder(p.home).length === 0 && processesMentioning(p.managed("twice")).length === 0, 15_000, "the failed run's cleanup");
  }, 300_000);

  it("nor in a boot timeout's (the CLI's own quote, launch/spawn.ts), nor the previous supervisor log's lines", async () => {
    expect((await p.cli(["add", `dir:${rootfs}`, "--name", "slow", "--", "sh", "-c", "echo up; exec sleep 1000"])).code).toBe(0);
    expect((await p.cli(["start", "slow"])).code).toBe(0);
    expect((await p.cli(["stop", "slow"])).code).toBe(0);
    expect(p.read("managed/slow/logs/console.log")).toContain("workload exited with signal SIGTERM");
    // a QEMU that never answers: the CLI gives up at --boot-timeout with what this run's console holds (nothing)
    const hung = join(p.dir, "hung-qemu");
    writeFileSync(hung, "#!/bin/sh\nexec sleep 1000\n");
    chmodSync(hung, 0o755);
    const second = await p.cli(["start", "slow", "--boot-timeout", "3"], { III_QEMU_BIN: hung });
    expect(second.code).toBe(1);
    expect(second.stderr).toMatch(/did not report READY within \d+ s/);
    expect(second.stderr).not.toContain("workload exited with signal SIGTERM");
    expect(second.stderr).not.toContain("(console:");
    await p.cli(["stop", "slow", "--timeout", "1"]);
    await waitFor(() => mountsUnder(p.home).length === 0 && processesMentioning(p.managed("slow")).length === 0, 30_000, "the timed-out run's cleanup");
  }, 300_000);
});
