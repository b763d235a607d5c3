// review rev6g: a guest holding init's control port (root with --cap-add SYS_PTRACE takes it with pidfd_getfd; a
// guest kernel it controls has it anyway) wrote CREDIT frames for fresh stream ids, and the supervisor kept a send
// window for each until the VM stopped: 8 million 13-byte frames in 19 s took its RSS from 75 MB to 1.27 GB, with
// no bound but the heap's (the host's memory, outside every limit of the worker). The capability is documented as
// reaching the guest kernel, not the host. Now those frames keep nothing: the RSS stays flat, the worker answers.
import { execFileSync } from "node:child_process";
import { mkdirSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { busyboxRootfs, Project, vmSkipReason } from "./harness.js";

const skip = vmSkipReason();
if (skip) console.warn(`[vm] skipping rev6g control-credit VM test: ${skip}`);

const FRAMES = 6_000_000;

function rssBytes(pid: number): number {
  const kb = /VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, "utf8"))?.[1];
  return Number(kb) * 1024;
}

describe.skipIf(!!skip)("a guest writing to init's control port cannot grow the supervisor's memory (vm)", () => {
  const p = new Project();
  let rootfs: string;
  beforeAll(() => {
    rootfs = busyboxRootfs();
  });
  afterAll(() => p.dispose());

  it(`${FRAMES} forged CREDIT frames for fresh stream ids leave the supervisor's RSS flat`, async () => {
    const tools = join(p.dir, "tools");
    mkdirSync(tools);
    execFileSync("gcc", ["-static", "-O2", "-o", join(tools, "pc"), fileURLToPath(new URL("../fixtures/rev6g-port-credit.c", import.meta.url))]);
    const add = await p.cli(["add", `dir:${rootfs}`, "--name", "pc", "--cap-add", "SYS_PTRACE", "-m", `${tools}:/t:ro`, "--", "sleep", "100000"]);
    expect(add.code, add.stderr).toBe(0);
    const start = await p.cli(["start", "pc"]);
    expect(start.code, start.stderr + p.diagnostics("pc")).toBe(0);
    const supervisor = (JSON.parse(p.read("managed/pc/vm.json")) as { pid: number }).pid;
    // A first exec, so the supervisor's own start-up garbage is not counted.
    expect((await p.cli(["exec", "pc", "--", "true"])).code).toBe(0);
    const before = rssBytes(supervisor);
    const attack = await p.cli(["exec", "pc", "--", "/t/pc", String(FRAMES)]);
    expect(attack.stdout + attack.stderr, "the attacker took init's port and wrote every frame").toContain(`sent ${FRAMES}`);
    // Frames are read in order: once this exec answers, every CREDIT before it was handled.
    const alive = await p.cli(["exec", "pc", "--", "echo", "alive"]);
    expect(alive.stdout.trim()).toBe("alive");
    const growth = rssBytes(supervisor) - before;
    console.log(`[rev6g] supervisor RSS +${(growth / 2 ** 20).toFixed(0)} MiB after ${FRAMES} forged CREDIT frames`);
    // Measured: +134 MiB after 8M frames and +138 MiB after 30M (garbage the heap keeps); before the fix +1.2 GiB
    // after 8M, growing with every frame.
    expect(growth).toBeLessThan(400 * 2 ** 20);
    expect((await p.cli(["stop", "pc", "--timeout", "1"])).code).toBe(0);
  }, 180_000);
});
