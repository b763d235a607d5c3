// Guests with more than one vCPU under TCG: booting on the first CPU and bringing the others online from init
// (TCG_SMP_BOOT_WORDS, what the worker does) against every CPU up at boot (the baseline: `maxcpus=N` after ours,
// the kernel takes the last), interleaved. Each boot runs a busybox init that sets a CPU quota (CFS bandwidth's
// static key), brings CPUs online where the arm says so, and reboots. Prints boot → reboot (min/median/max),
// the per-round ratio, the time init's online takes, and any kernel oops ("Oops: int3" is the one the mode avoids).
//   --rounds N (default 10)  --vcpus N (default 2)  --load: a busy loop on the host while it runs
import { spawn } from "node:child_process";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { QemuVmm } from "../../src/vmm/index.js";
import { resolveKernel } from "../../src/firmware/index.js";
import { chooseAccel, probeAccelFacts } from "../../src/vmm/accel.js";
import { INIT_PRELUDE, INIT_REBOOT, VmTestResources, rootfsWithInit } from "../../test/vm/harness.js";
import { buildBusyboxRootfs, median } from "../boot/raw-floor.js";

function option(name: string, fallback: number): number {
  const i = process.argv.indexOf(name);
  if (i < 0) return fallback;
  const value = Number(process.argv[i + 1]);
  if (!Number.isInteger(value) || value < 1) {
    console.error(`smp-boot: ${name} needs a positive integer, got ${JSON.stringify(process.argv[i + 1])}`);
    process.exit(2);
  }
  return value;
}
const rounds = option("--rounds", 10);
const vcpus = option("--vcpus", 2);
if (vcpus < 2) {
  console.error("smp-boot: --vcpus must be at least 2");
  process.exit(2);
}
const accel = chooseAccel(probeAccelFacts());
if (accel.accel !== "tcg") {
  console.log(`smp-boot: skipped: the race is TCG's and this host boots with ${accel.accel}`);
  process.exit(0);
}
const env = { kernelPath: (await resolveKernel({ download: false })).kernel.elfPath, busyboxRootfs: buildBusyboxRootfs() };

interface Arm { name: string; extra: string[]; online: boolean }
const arms: Arm[] = [
  { name: "all CPUs at boot (baseline)", extra: [`maxcpus=${vcpus}`], online: false },
  { name: "one CPU, init brings the rest", extra: [], online: true },
];
const onlineAll = Array.from({ length: vcpus - 1 }, (_, i) => `echo 1 > /sys/devices/system/cpu/cpu${i + 1}/online`).join("; ");

const summary = (xs: number[]) => (xs.length ? `min ${Math.min(...xs)} median ${median(xs)} max ${Math.max(...xs)}` : "none");

const res = new VmTestResources();
const load = process.argv.includes("--load") ? spawn("sh", ["-c", "while :; do :; done"], { stdio: "ignore" }) : undefined;
const results = arms.map(() => ({ ms: [] as number[], onlineS: [] as number[], oops: 0, failed: 0 }));
const ratios: number[] = [];
try {
  for (let round = 0; round < rounds; round++) {
    const times: Array<number | undefined> = [];
    for (const [i, arm] of arms.entries()) {
      const dir = res.dir(`smp-${round}-${i}`);
      const root = rootfsWithInit(env.busyboxRootfs, dir, `${INIT_PRELUDE}
mkdir -p /sys/fs/cgroup && /bin/busybox mount -t cgroup2 none /sys/fs/cgroup
echo +cpu > /sys/fs/cgroup/cgroup.subtree_control; mkdir -p /sys/fs/cgroup/w; echo "50000 100000" > /sys/fs/cgroup/w/cpu.max
read before idle < /proc/uptime
${arm.online ? onlineAll : ":"}
read after idle < /proc/uptime
echo "smp-boot online-s=$before,$after nproc=$(/bin/busybox nproc)"
${INIT_REBOOT}`);
      const startedAt = Date.now();
      const vm = res.track(
        new QemuVmm({ name: `smp${round}-${i}`, kernelPath: env.kernelPath, root: { tag: "rootfs", hostDir: root }, vcpus, memoryBytes: 128 << 20, consoleLogPath: join(dir, "console.log"), runDir: join(dir, "run"), accel: "tcg", cmdlineExtra: arm.extra }),
      );
      await vm.start();
      const exit = await Promise.race([vm.wait(), new Promise<null>((r) => setTimeout(() => r(null), 60_000))]);
      if (!exit) await vm.stop();
      const text = readFileSync(join(dir, "console.log"), "utf8");
      const r = results[i]!;
      const line = /smp-boot online-s=([\d.]+),([\d.]+) nproc=(\d+)/.exec(text);
      if (/Oops|Kernel panic|BUG:/.test(text)) {
        r.oops++;
        console.log(`round ${round + 1} ${arm.name}: kernel oops: ${text.split("\n").filter((l) => /Oops|RIP:/.test(l)).slice(0, 2).join(" | ")}`);
      } else if (!line || Number(line[3]) !== vcpus) {
        r.failed++;
        console.log(`round ${round + 1} ${arm.name}: no ${vcpus} CPUs online: ${text.slice(-400)}`);
      } else {
        const ms = Date.now() - startedAt;
        r.ms.push(ms);
        times.push(ms);
        if (arm.online) r.onlineS.push(Math.round((Number(line[2]) - Number(line[1])) * 1000));
        continue;
      }
      times.push(undefined);
    }
    if (times[0] !== undefined && times[1] !== undefined) ratios.push(Math.round((times[1] / times[0]) * 100) / 100);
    console.log(`round ${round + 1}/${rounds}: ${times.map((t) => t ?? "-").join(" vs ")} ms`);
  }
} finally {
  load?.kill();
  await res.release();
}
for (const [i, arm] of arms.entries()) {
  const r = results[i]!;
  console.log(`${arm.name}: boot → reboot ms ${summary(r.ms)}; oopses ${r.oops}/${rounds}, other failures ${r.failed}${arm.online ? `; init's online ms ${summary(r.onlineS)}` : ""}`);
}
console.log(`one CPU then online / all at boot, per round: ${summary(ratios)}; of the medians: ${results[0]!.ms.length && results[1]!.ms.length ? (median(results[1]!.ms) / median(results[0]!.ms)).toFixed(2) : "-"}`);
