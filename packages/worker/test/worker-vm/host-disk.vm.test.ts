// What a hostile guest can write to the host's disk outside its own layer: its console, which QEMU appended to a
// file without bound (~45 MB/s from a guest `dd` to /dev/console under TCG). The supervisor now keeps it, rotated.
import { appendFileSync, readdirSync, readFileSync, statSync } from "node:fs";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { busyboxRootfs, Project, vmSkipReason } from "./harness.js";

const skip = vmSkipReason();
if (skip) console.warn(`[vm] skipping host-disk VM tests: ${skip}`);

const MiB = 1024 * 1024;
/** RotatingLog's limit: the log and its `.1` hold at most twice it. */
const ROTATE = 16 * MiB;

describe.skipIf(!!skip)("a guest cannot fill the host's disk through its console (vm)", () => {
  let rootfs: string;
  const p = new Project();
  beforeAll(() => {
    rootfs = busyboxRootfs();
  });
  afterAll(async () => {
    await p.dispose();
  });

  it("keeps the console log and its .1 under twice the rotation size while the guest writes 64 MiB to /dev/console, and still captures the console", async () => {
    expect((await p.cli(["add", `dir:${rootfs}`, "--name", "flood", "--", "sh", "-c", "echo up; exec sleep 1000"])).code).toBe(0);
    const start = await p.cli(["start", "flood"]);
    expect(start.code, start.stderr + p.diagnostics("flood")).toBe(0);
    const flood = await p.cli(["exec", "flood", "--", "sh", "-c", "dd if=/dev/zero bs=64k count=1024 2>/dev/null | tr '\\0' x > /dev/console; echo console-marker > /dev/console; echo done"]);
    expect(flood.stdout, flood.stderr).toContain("done");
    const logs = join(p.managed("flood"), "logs");
    // The supervisor drains the socket behind the guest's writes: wait for the marker to land.
    const deadline = Date.now() + 30_000;
    while (!p.read("managed/flood/logs/console.log").includes("console-marker") && Date.now() < deadline) await new Promise((r) => setTimeout(r, 200));
    expect(p.read("managed/flood/logs/console.log")).toContain("console-marker");
    const consoleFiles = readdirSync(logs).filter((n) => n.startsWith("console.log") && !n.includes(".times"));
    const total = consoleFiles.reduce((sum, n) => sum + statSync(join(logs, n)).size, 0);
    expect(consoleFiles.sort()).toEqual(["console.log", "console.log.1"]);
    expect(total).toBeLessThanOrEqual(2 * ROTATE + 64 * 1024);
    expect((await p.cli(["stop", "flood", "--timeout", "2"])).code).toBe(0);
  }, 240_000);

  it("empties QEMU's and virtiofsd's own logs past 4 MiB while the VM runs (they append: the next line lands at the start)", async () => {
    // What a guest driving its devices might make QEMU print per request is not reproduced here: the test
    // grows the log itself, as such messages would, and checks the bound the supervisor keeps.
    expect((await p.cli(["add", `dir:${rootfs}`, "--name", "noisy", "--", "sh", "-c", "echo up; exec sleep 1000"])).code).toBe(0);
    const start = await p.cli(["start", "noisy"]);
    expect(start.code, start.stderr + p.diagnostics("noisy")).toBe(0);
    const logs = ["qemu.log", "virtiofsd-rootfs.log"].map((n) => join(p.managed("noisy"), "run", n));
    for (const log of logs) appendFileSync(log, Buffer.alloc(5 * MiB, 0x41));
    const deadline = Date.now() + 15_000;
    while (logs.some((l) => statSync(l).size > 4 * MiB) && Date.now() < deadline) await new Promise((r) => setTimeout(r, 250));
    for (const log of logs) {
      expect(statSync(log).size, log).toBeLessThan(64 * 1024);
      expect(readFileSync(log, "utf8")).toMatch(/bytes of this log dropped/);
    }
    expect((await p.cli(["exec", "noisy", "--", "echo", "still-running"])).stdout).toContain("still-running");
    expect((await p.cli(["stop", "noisy", "--timeout", "2"])).code).toBe(0);
  }, 120_000);

  it("logs the network's denials the guest causes up to a budget, then one line saying the rest is dropped", async () => {
    // A small budget (III_GUEST_LOG_BUDGET_BYTES) so that 150 refused connections pass it; by default it is 1 MiB.
    const q = new Project({ III_GUEST_LOG_BUDGET_BYTES: "4096" });
    try {
      expect((await q.cli(["add", `dir:${rootfs}`, "--name", "knock", "--", "sh", "-c", "echo up; exec sleep 1000"])).code).toBe(0);
      const start = await q.cli(["start", "knock"]);
      expect(start.code, start.stderr + q.diagnostics("knock")).toBe(0);
      // The gateway's port 9 is no --host-port: every attempt is refused by the policy, one log line each.
      const knock = await q.cli(["exec", "knock", "--", "sh", "-c", "gw=$(awk '/nameserver/{print $2}' /etc/resolv.conf); for i in $(seq 1 150); do nc -w 1 $gw 9 </dev/null 2>/dev/null; done; echo knocked"]);
      expect(knock.stdout, knock.stderr).toContain("knocked");
      const log = q.read("managed/knock/logs/supervisor.log");
      const denials = log.split("\n").filter((l) => l.includes("net: policy: denied")).length;
      expect(denials).toBeGreaterThan(5);
      expect(denials).toBeLessThan(100);
      expect(log.match(/net: further messages dropped/g)).toHaveLength(1);
    } finally {
      await q.dispose();
    }
  }, 240_000);
});
