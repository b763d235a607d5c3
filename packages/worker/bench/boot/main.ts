/**
 * `node bench/boot/run.mjs [--runs N] [--json] [--compare-tuning]`: prints the raw-floor boot table (row a);
 * with --compare-tuning also the same boots without TCG_BOOT_TUNING, as `ours  floor  ratio` (tuned/untuned).
 */
import { parseArgs } from "node:util";
import { resolveKernel } from "../../src/firmware/index.js";
import { chooseAccel, probeAccelFacts } from "../../src/vmm/accel.js";
import { buildBusyboxRootfs, formatBootTable, measureIdleRss, measureRawFloor, median, medians } from "./raw-floor.js";
import { measureWorkerBoot, measureWorkerIdleRss } from "./worker-boot.js";

const { values } = parseArgs({ options: { runs: { type: "string", default: "10" }, json: { type: "boolean", default: false }, download: { type: "boolean", default: false }, "compare-tuning": { type: "boolean", default: false } } });
const runs = Number(values.runs);
if (!Number.isInteger(runs) || runs < 1) throw new Error(`--runs must be a positive integer, got ${values.runs}`);

const { firmware, kernel } = await resolveKernel({ download: values.download });
const accel = chooseAccel(probeAccelFacts());
console.error(`raw floor: ${runs} boots, libkrunfw ${firmware.version} from ${firmware.source}, accel ${accel.accel} (${accel.reason})`);
const samples = await measureRawFloor({
  kernelPath: kernel.elfPath,
  runs,
  accel: accel.accel,
  onRun: (i, s) => console.error(`  boot ${String(i + 1).padStart(2)}: first line ${s["first console line"]!.toFixed(0)} ms, exit ${s["qemu exit"]!.toFixed(0)} ms`),
});
const rows = medians(samples);
if (values["compare-tuning"]) {
  console.error("same boots without the TCG boot tuning:");
  const untuned = medians(
    await measureRawFloor({
      kernelPath: kernel.elfPath,
      runs,
      accel: accel.accel,
      tcgTuning: false,
      onRun: (i, s) => console.error(`  boot ${String(i + 1).padStart(2)}: first line ${s["first console line"]!.toFixed(0)} ms`),
    }),
  );
  console.log(`TCG boot tuning: tuned (ms) vs untuned (floor), median of ${runs}\n${formatBootTable(rows.map((r, i) => ({ ...r, floorMs: untuned[i]!.ms })))}\n`);
}
const rss = await measureIdleRss({ kernelPath: kernel.elfPath, accel: accel.accel });

// (b) iii worker start → first workload line, same rootfs, kernel and accel.
console.error(`ours: ${runs} x iii-worker start → first workload line`);
const ours = await measureWorkerBoot({
  busyboxRootfs: buildBusyboxRootfs(),
  runs,
  onRun: (i, s) => console.error(`  start ${String(i + 1).padStart(2)}: first workload line ${s["start → first workload line"]!.toFixed(0)} ms (READY at ${s.ready ?? NaN} ms)`),
});
const m = (phase: string) => median(ours[phase] ?? []);
const guestSteps = Object.keys(ours).filter((k) => k.startsWith("guest:") && k !== "guest:boot");
const breakdown = [
  { phase: "supervisor: firmware/kernel", ms: m("firmware") },
  { phase: "supervisor: FUSE mount", ms: m("mount") - m("firmware") },
  { phase: "supervisor: network stack", ms: m("network") - m("mount") },
  { phase: "supervisor: QEMU + virtiofsd start", ms: m("qemu") - m("network") },
  { phase: "kernel + init → READY", ms: m("ready") - m("qemu") },
  ...guestSteps.map((k) => ({ phase: `  init step ${k.slice(6)}`, ms: m(k) })),
  { phase: "  init total (in guest)", ms: m("guest:boot") },
  { phase: "CLI + spawn + workload → first line", ms: m("start → first workload line") - m("ready") },
];
const floorFirstLine = rows.find((r) => r.phase === "first console line")?.ms;
const total = { phase: "start → first workload line", ms: m("start → first workload line"), ...(floorFirstLine ? { floorMs: floorFirstLine } : {}) };
const oursRss = await measureWorkerIdleRss(buildBusyboxRootfs());

if (values.json) {
  console.log(JSON.stringify({ runs, accel: accel.accel, samples, medians: rows, idleRssBytes: rss, ours: { samples: ours, breakdown, total, idleRssBytes: oursRss } }, null, 2));
} else {
  console.log(`(a) raw floor, median of ${runs}\n${formatBootTable(rows)}`);
  console.log(`\nidle VM host RSS (256 MiB guest, busybox init sleeping)\n${Object.entries(rss).map(([k, v]) => `${k.padEnd(18)}  ${(v / 1048576).toFixed(1).padStart(7)} MiB`).join("\n")}`);
  console.log(`\n(b) iii worker start → first workload line, median of ${runs}, by phase\n${formatBootTable(breakdown)}`);
  console.log(`\n(b) vs (a)\n${formatBootTable([total])}`);
  console.log(`\nidle worker VM host RSS (256 MiB guest, workload sleeping)\n${Object.entries(oursRss).map(([k, v]) => `${k.padEnd(18)}  ${(v / 1048576).toFixed(1).padStart(7)} MiB`).join("\n")}`);
}
