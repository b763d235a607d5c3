import { chmodSync, readdirSync, readlinkSync, writeFileSync } from "node:fs";
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

  it("nor when the supervisor dies during boot (the CLI's own quote, launch/spawn.ts), nor the previous supervisor log's lines", async () => {
    expect((await p.cli(["add", `dir:${rootfs}`, "--name", "slow", "--", "sh", "-c", "echo up; exec sleep 1000"])).code).toBe(0);
    expect((await p.cli(["start", "slow"])).code).toBe(0);
    expect((await p.cli(["stop", "slow"])).code).toBe(0);
    expect(p.read("managed/slow/logs/console.log")).toContain("workload exited with signal SIGTERM");
    expect(p.read("managed/slow/logs/supervisor.log")).toContain("POST /stop: stopping");
    // a QEMU that answers -help (the drop-syntax probe) and then never boots; its supervisor is killed meanwhile
    const hung = join(p.dir, "hung-qemu");
    writeFileSync(hung, '#!/bin/sh\n[ "$1" = -help ] && exit 0\nexec sleep 1000\n');
    chmodSync(hung, 0o755);
    const starting = p.cli(["start", "slow"], { III_QEMU_BIN: hung });
    await waitFor(() => {
      try {
        return (JSON.parse(p.read("managed/slow/vm.json")) as { children?: { name: string }[] }).children?.some((c) => c.name === "qemu") === true;
      } catch {
        return false;
      }
    }, 60_000, "the hung QEMU recorded in vm.json");
    process.kill((JSON.parse(p.read("managed/slow/vm.json")) as { pid: number }).pid, "SIGKILL");
    const second = await starting;
    expect(second.code).toBe(1);
    expect(second.stderr).toContain('the supervisor of "slow" exited during boot');
    expect(second.stderr).not.toContain("workload exited with signal SIGTERM");
    expect(second.stderr).not.toContain("POST /stop");
    expect(second.stderr).not.toContain("(console:");
    // stop finds the dead supervisor's recorded QEMU (and the rest) and ends them
    await p.cli(["stop", "slow", "--timeout", "1"]);
    await waitFor(() => mountsUnder(p.home).length === 0 && processesMentioning(p.managed("slow")).length === 0, 30_000, "the killed run's cleanup");
    await waitFor(() => processesWithCwdUnder(p.dir).length === 0, 10_000, `no process left in the project: ${processesWithCwdUnder(p.dir).join(", ")}`);
  }, 300_000);

  it("a QEMU binary that never answers its -help probe fails the start in bounded time and leaves no process", async () => {
    const mute = join(p.dir, "mute-qemu");
    writeFileSync(mute, "#!/bin/sh\nexec sleep 1000\n");
    chmodSync(mute, 0o755);
    expect((await p.cli(["add", `dir:${rootfs}`, "--name", "mute", "--", "true"])).code).toBe(0);
    const started = await p.cli(["start", "mute", "--boot-timeout", "60"], { III_QEMU_BIN: mute });
    expect(started.code).toBe(1);
    expect(started.stderr).toContain(`${mute} -help failed: did not answer within 10 s [QemuNotFound]`);
    await waitFor(() => mountsUnder(p.home).length === 0 && processesMentioning(p.managed("mute")).length === 0, 30_000, "the failed run's cleanup");
    await waitFor(() => processesWithCwdUnder(p.dir).length === 0, 10_000, `no process left in the project: ${processesWithCwdUnder(p.dir).join(", ")}`);
  }, 300_000);
});

/** Live processes whose working directory is under `dir` (the supervisor runs QEMU and its probe from there). */
function processesWithCwdUnder(dir: string): string[] {
  const out: string[] = [];
  for (const pid of readdirSync("/proc").filter((n) => /^\d+$/.test(n))) {
    try {
      const cwd = readlinkSync(`/proc/${pid}/cwd`).replace(/ \(deleted\)$/, "");
      if (cwd.startsWith(dir)) out.push(`${pid} ${cwd}`);
    } catch {
      // gone, or not ours to read
    }
  }
  return out;
}
