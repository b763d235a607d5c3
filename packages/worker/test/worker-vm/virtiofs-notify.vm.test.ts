import { execFileSync } from "node:child_process";
import { mkdirSync } from "node:fs";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { Project, vcpuSnapshot, virtioSnapshot, vmSkipReason } from "./harness.js";

// A guest waiting on its file system for a reply virtiofsd has already put in the ring: under TCG with one vCPU,
// QEMU translated the guest's memory barriers to nothing (it emits them only for a machine that may have more
// than one vCPU), so the guest's "publish used_event, then re-read used.idx" and virtiofsd's "publish used.idx,
// then read used_event" could pass each other and neither side notified the other. It wedged `npm ci` in the
// hello-worker test (2 of 8 clean-clone CI runs). Here many small writes through two shares (the root's and a
// host directory's virtiofsd) make the race likely: before the fix (`-smp 1,maxcpus=2`, qemu-argv.ts) this
// stalled for good within 60 s in about half the runs, and each stall showed used = avail, used_event behind.
const REPO = fileURLToPath(new URL("../../../..", import.meta.url));
const skip = vmSkipReason();
if (skip) console.warn(`[vm] skipping the virtiofs notification VM test: ${skip}`);

const RUN_MS = 75_000;
const STALL_MS = 10_000;

describe.skipIf(!!skip)("virtiofs replies reach a one-vCPU TCG guest (vm)", () => {
  const p = new Project();
  let image: string;
  beforeAll(() => {
    const layout = execFileSync(join(REPO, "images/build.sh"), ["node"], { encoding: "utf8", timeout: 900_000 }).trim();
    image = `oci:${layout}:latest`;
  }, 900_000);
  afterAll(() => p.dispose());

  it(`16 concurrent writers on two shares make progress for ${RUN_MS / 1000} s without a ${STALL_MS / 1000} s stall`, async () => {
    const data = join(p.dir, "data");
    mkdirSync(data);
    // Libuv's four threads keep four requests in flight; every writeFile is an open, a write and a release.
    const js =
      "const fs=require('fs/promises');let n=0;" +
      "async function loop(path){for(;;){await fs.writeFile(path,String(n));n++;if(n%500===0)console.log(n)}}" +
      "for(let w=0;w<8;w++){loop('/data/f'+w);loop('/var/tmp/f'+w)}";
    expect((await p.cli(["add", image, "--name", "writers", "-m", `${data}:/data`, "--", "node", "-e", js])).code).toBe(0);
    const started = await p.cli(["start", "writers"]);
    expect(started.code, started.stderr + p.diagnostics("writers")).toBe(0);
    const lines = () => p.read("managed/writers/logs/stdout.log").split("\n").filter(Boolean).length;
    const begun = Date.now();
    let last = lines();
    let lastChange = Date.now();
    while (Date.now() - begun < RUN_MS) {
      await new Promise((r) => setTimeout(r, 1_000));
      const now = lines();
      if (now !== last) {
        last = now;
        lastChange = Date.now();
      } else if (Date.now() - lastChange >= STALL_MS && now > 0) {
        throw new Error(
          `no write finished for ${STALL_MS / 1000} s after ${Math.round((Date.now() - begun) / 1000)} s (${now * 500} writes)` +
            `\n--- virtio devices ---\n${await virtioSnapshot(p.managed("writers"))}` +
            `\n--- guest vCPUs ---\n${await vcpuSnapshot(p.managed("writers"), 5)}${p.diagnostics("writers")}`,
        );
      }
    }
    console.log(`[vm] virtiofs notifications: ${last * 500} writes in ${RUN_MS / 1000} s through two shares, no stall`);
    expect(last).toBeGreaterThan(10);
    expect((await p.cli(["stop", "writers", "--timeout", "1"])).code).toBe(0);
  }, RUN_MS + 120_000);
});
