import { existsSync } from "node:fs";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { busyboxRootfs, Project, vmSkipReason, waitFor } from "./harness.js";

const skip = vmSkipReason();
if (skip) console.warn(`[vm] skipping the worker health VM test: ${skip}`);

interface Listed {
  name: string;
  status: string;
  health?: string;
  healthReason?: string;
}

describe.skipIf(!!skip)("a guest that stops answering is reported unhealthy (vm)", () => {
  let rootfs: string;
  const projects: Project[] = [];
  beforeAll(() => {
    rootfs = busyboxRootfs();
  });
  afterAll(async () => {
    for (const p of projects) await p.dispose();
  });

  it("list says unhealthy with the reason while QEMU is frozen, running again once it thaws, and stop still works", async () => {
    // Pings every second, each may take a second, two missed in a row make the guest unhealthy.
    const p = new Project({ III_HEALTH_INTERVAL_MS: "1000", III_HEALTH_TIMEOUT_MS: "1000", III_HEALTH_MISSES: "2" });
    projects.push(p);
    expect((await p.cli(["add", `dir:${rootfs}`, "--name", "frozen", "--", "sh", "-c", "echo up; while :; do sleep 1; done"])).code).toBe(0);
    const start = await p.cli(["start", "frozen"]);
    expect(start.code, start.stderr + p.diagnostics("frozen")).toBe(0);
    const listed = async (): Promise<Listed> => (JSON.parse((await p.cli(["list", "--json"])).stdout) as Listed[])[0]!;

    // Healthy while init answers: several ping rounds pass without a verdict.
    await new Promise((r) => setTimeout(r, 4_000));
    expect(await listed()).toMatchObject({ status: "running" });
    expect((await listed()).health).toBeUndefined();

    // A wedged guest: QEMU stopped, so nothing in the guest runs, while every host process is alive.
    const record = JSON.parse(p.read("managed/frozen/vm.json")) as { children: { name: string; pid: number }[] };
    const qemu = record.children.find((c) => c.name === "qemu")!.pid;
    process.kill(qemu, "SIGSTOP");
    try {
      await waitFor(async () => (await listed()).health === "unhealthy", 20_000, "list to say unhealthy");
      const now = await listed();
      expect(now.status).toBe("running");
      expect(now.healthReason).toMatch(/init has not answered the control channel for \d+ s \(2 pings of 1000 ms unanswered\)/);
      expect((await p.cli(["list"])).stdout).toMatch(/frozen\s+dir:\S+\s+unhealthy: init has not answered the control channel/);
      const inspect = JSON.parse((await p.cli(["inspect", "frozen"])).stdout) as { state: { health: string; healthReason: string } }[];
      expect(inspect[0]!.state).toMatchObject({ health: "unhealthy", healthReason: now.healthReason });
    } finally {
      process.kill(qemu, "SIGCONT");
    }

    await waitFor(async () => (await listed()).health === undefined, 20_000, "list to drop unhealthy once init answers");
    expect(await listed()).toMatchObject({ status: "running" });
    expect((await p.cli(["list"])).stdout).toMatch(/frozen\s+dir:\S+\s+running/);

    expect((await p.cli(["stop", "frozen", "--timeout", "5"])).code).toBe(0);
    expect((await listed()).status).toBe("stopped");
    // The supervisor removes its verdict with the rest of the run's state once it has released everything.
    await waitFor(() => !existsSync(join(p.managed("frozen"), "health.json")), 10_000, "health.json to be removed");
  }, 120_000);
});
