// The guest as the attacker, through a usermode helper (review5-s18 #1). With --cap-add NET_ADMIN, root in the
// workload makes a bridge and turns STP on; the kernel then runs /sbin/bridge-stp, a file of the workload's own
// root filesystem, from a kernel thread: in init's mount namespace and root cgroup, where it set the worker's
// pids.max and cpu.max to max (seen with session 17's init). init now roots the kernel threads in an empty file
// system (iii_sys.c rootKernelThreads), so no helper finds a program, whatever capability reaches one.
import { execFileSync } from "node:child_process";
import { chmodSync, mkdirSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { busyboxRootfs, Project, vmSkipReason } from "./worker-vm/harness.js";

const skip = vmSkipReason();
if (skip) console.warn(`[vm] skipping the usermode helper test: ${skip}`);

/** Turns STP on for br0 (the old bridge ioctl; busybox's brctl has no `stp`): the kernel runs /sbin/bridge-stp. */
const STP_ON_C = `
#include <linux/if_bridge.h>
#include <linux/sockios.h>
#include <net/if.h>
#include <stdio.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
int main(void) {
  int fd = socket(AF_INET, SOCK_DGRAM, 0);
  unsigned long args[4] = { BRCTL_SET_BRIDGE_STP_STATE, 1, 0, 0 };
  struct ifreq ifr;
  memset(&ifr, 0, sizeof ifr);
  strcpy(ifr.ifr_name, "br0");
  ifr.ifr_data = (char *)args;
  if (ioctl(fd, SIOCDEVPRIVATE, &ifr) != 0) { perror("stp on"); return 1; }
  puts("stp-on");
  return 0;
}
`;

// What the planted helper does if the kernel runs it: leaves a mark and lifts the worker's limits.
const HELPER = `#!/bin/sh
touch /umh-ran
for f in /sys/fs/cgroup/worker/pids.max /sys/fs/cgroup/worker/cpu.max; do echo max > $f; done
`;

describe.skipIf(!!skip)("usermode helpers: a capability that reaches one runs nothing of the workload's (vm)", () => {
  let rootfs: string;
  const p = new Project();
  beforeAll(() => {
    rootfs = busyboxRootfs();
  }, 300_000);
  afterAll(async () => {
    await p.dispose();
  });

  it("--cap-add NET_ADMIN: STP on a bridge does not run the workload's /sbin/bridge-stp; pids.max and cpu.max hold", async () => {
    const tools = join(p.dir, "tools");
    mkdirSync(tools);
    writeFileSync(join(tools, "stp-on.c"), STP_ON_C);
    execFileSync("gcc", ["-static", "-O1", "-o", join(tools, "stp-on"), join(tools, "stp-on.c")]);
    writeFileSync(join(tools, "bridge-stp"), HELPER);
    chmodSync(join(tools, "bridge-stp"), 0o755);
    const add = await p.cli(["add", `dir:${rootfs}`, "--name", "net", "--cap-add", "NET_ADMIN", "--pids", "64", "--cpus", "500m", "-m", `${tools}:/t:ro`, "--", "sleep", "100000"]);
    expect(add.code, add.stderr).toBe(0);
    const start = await p.cli(["start", "net"]);
    expect(start.code, start.stderr + p.diagnostics("net")).toBe(0);
    const attack = [
      "cp /t/bridge-stp /sbin/bridge-stp && chmod 755 /sbin/bridge-stp",
      "brctl addbr br0",
      "/t/stp-on",
      "sleep 3",
      "echo planted=$(grep -c umh-ran /sbin/bridge-stp)",
      "test -e /umh-ran && echo helper-ran",
      "echo pids=$(cat /sys/fs/cgroup/worker/pids.max) cpu=$(cat /sys/fs/cgroup/worker/cpu.max)",
    ].join("; ");
    const run = await p.cli(["exec", "net", "--", "sh", "-c", attack]);
    expect(run.code, run.stderr).toBe(0);
    expect(run.stdout).toContain("stp-on"); // the capability works: the bridge took STP
    expect(run.stdout).toContain("planted=1");
    expect(run.stdout).not.toContain("helper-ran");
    // pids.max of `worker` is the workload's 64 plus init's exec reserve; cpu.max is --cpus 500m
    expect(run.stdout).not.toMatch(/pids=max|cpu=max/);
    expect(run.stdout).toContain("cpu=50000 100000");
    expect((await p.cli(["stop", "net", "--timeout", "1"])).code).toBe(0);
  }, 240_000);

  it("--cap-add SYS_ADMIN: a core_pattern pipe to the workload's own program runs nothing when a process crashes", async () => {
    // SYS_ADMIN lifts the in-guest limits anyway (add says so); the helper would also run outside the workload's
    // cgroup and mount namespace, in init's.
    const add = await p.cli(["add", `dir:${rootfs}`, "--name", "adm", "--cap-add", "SYS_ADMIN", "--", "sleep", "100000"]);
    expect(add.code, add.stderr).toBe(0);
    const start = await p.cli(["start", "adm"]);
    expect(start.code, start.stderr + p.diagnostics("adm")).toBe(0);
    const attack = [
      "printf '#!/bin/sh\\ntouch /umh-ran\\n' > /ch && chmod 755 /ch",
      "mount -o remount,rw /proc/sys && echo '|/ch' > /proc/sys/kernel/core_pattern",
      "echo pattern=$(cat /proc/sys/kernel/core_pattern)",
      "sh -c 'kill -SEGV $$'",
      "sleep 2",
      "test -e /umh-ran && echo helper-ran",
      "true",
    ].join("; ");
    const run = await p.cli(["exec", "adm", "--", "sh", "-c", attack]);
    expect(run.code, run.stderr).toBe(0);
    expect(run.stdout).toContain("pattern=|/ch"); // the capability works: the pattern took
    expect(run.stdout).not.toContain("helper-ran");
    expect((await p.cli(["stop", "adm", "--timeout", "1"])).code).toBe(0);
  }, 240_000);
});
