/**
 * `node bench/boot/run.mjs [--runs N] [--json] [--compare-tuning] [--versus <cli.js>] [--init <init.krun>]
 * [--versus-init <init.krun>]`: `iii-worker start` → the workload's first line against the raw-QEMU busybox
 * floor (QEMU + kernel + virtiofsd + a shell init's first line), in interleaved rounds (floor, ours, floor, ours,
 * …) so host load hits both alike; prints min/median/max of every phase and the ratio. With --compare-tuning also
 * the floor without TCG_BOOT_TUNING. An A/B of a change: --versus runs another build's CLI (e.g. a copy of the
 * baseline's dist/cli.js, placed where it resolves the same node_modules) in the same rounds, in alternating
 * order, and prints its table and the per-round difference; --init / --versus-init set III_INIT_PATH for one side.
 */
import { resolve } from "node:path";
import { parseArgs } from "node:util";
import { resolveKernel } from "../../src/firmware/index.js";
import { chooseAccel, probeAccelFacts } from "../../src/vmm/accel.js";
import { formatMachineCosts, measureMachineCosts } from "./machine.js";
import { buildBusyboxRootfs, formatBootTable, measureRawFloor, median, medians } from "./raw-floor.js";
import { WorkerBootRig } from "./worker-boot.js";

const { values } = parseArgs({
  options: {
    runs: { type: "string", default: "10" },
    json: { type: "boolean", default: false },
    download: { type: "boolean", default: false },
    "compare-tuning": { type: "boolean", default: false },
    versus: { type: "string" },
    init: { type: "string" },
    "versus-init": { type: "string" },
  },
});
const runs = Number(values.runs);
if (!Number.isInteger(runs) || runs < 1) throw new Error(`--runs must be a positive integer, got ${values.runs}`);

const { firmware, kernel } = await resolveKernel({ download: values.download });
const accel = chooseAccel(probeAccelFacts());
const rootfs = buildBusyboxRootfs();
console.error(`boot: ${runs} interleaved rounds, libkrunfw ${firmware.version} from ${firmware.source}, accel ${accel.accel} (${accel.reason})`);
const machine = measureMachineCosts();
console.error(formatMachineCosts(machine));

const floor: Record<string, number>[] = [];
const ours: Record<string, number>[] = [];
const versus: Record<string, number>[] = [];
const initEnv = (path: string | undefined) => (path ? { III_INIT_PATH: resolve(path) } : {});
const rig = new WorkerBootRig(undefined, initEnv(values.init));
const versusRig = values.versus ? new WorkerBootRig(resolve(values.versus), initEnv(values["versus-init"])) : undefined;
try {
  await rig.add(rootfs);
  await versusRig?.add(rootfs);
  for (let i = 0; i < runs; i++) {
    const f = await measureRawFloor({ kernelPath: kernel.elfPath, runs: 1, accel: accel.accel, busyboxRootfs: rootfs });
    floor.push(Object.fromEntries(Object.entries(f).map(([k, v]) => [k, v[0]!])));
    // With --versus, the two builds take turns going first.
    if (versusRig && i % 2 === 0) versus.push(await versusRig.start());
    const o = await rig.start();
    ours.push(o);
    if (versusRig && i % 2 === 1) versus.push(await versusRig.start());
    const v = versusRig ? `, versus ${versus[i]!["start → first workload line"]!.toFixed(0)} ms` : "";
    console.error(`  round ${String(i + 1).padStart(2)}: floor first line ${floor[i]!["first console line"]!.toFixed(0)} ms, ours first workload line ${o["start → first workload line"]!.toFixed(0)} ms (supervisor READY at ${o.ready} ms of its own clock)${v}`);
  }
} finally {
  await rig.close();
  await versusRig?.close();
}

/**
 * Ours, by phase: the unindented rows are differences of the cumulative timings on one clock, so they add up to
 * the total; indented rows are details. A supervisor spawned in standby (a worker that ran before, as here) loads
 * while the CLI runs its checks, and resumes on the CLI's `go` ("cli:go").
 */
function phasesOf(s: Record<string, number>): Record<string, number> {
  const g = (k: string) => s[k] ?? NaN;
  const sup = g("cli:supervisor"); // supervisor process start, on the CLI's clock
  const parallel = Math.max(g("mount"), g("network"), g("control"), g("qemu"));
  const standby = s["cli:go"] !== undefined;
  // Every row in every sample (NaN where it does not apply: the first round starts without a standby).
  return {
    "CLI: process start → supervisor spawned": g("cli:spawn"),
    "CLI: checks, supervisor loading meanwhile → go (standby)": standby ? g("cli:go") - g("cli:spawn") : NaN,
    "go → supervisor running (standby)": standby ? sup + g("load") - g("cli:go") : NaN,
    "spawn → supervisor process started (no standby)": standby ? NaN : sup - g("cli:spawn"),
    "supervisor: Node start + code loaded (no standby)": standby ? NaN : g("load"),
    "  spawn → supervisor process started": sup - g("cli:spawn"),
    "  supervisor: Node start + code loaded": standby ? g("standby") : g("load"),
    "supervisor: lock, request, slot, plan": g("plan") - g("load"),
    "  mount (FUSE server pre-spawned)": g("mount") - g("plan"),
    "  network stack": g("network") - g("plan"),
    "  control socket": g("control") - g("plan"),
    "  QEMU spawned (after network and control, beside the mount)": g("qemu") - g("plan"),
    "supervisor: mount ‖ network ‖ control ‖ QEMU's spawn": parallel - g("plan"),
    "supervisor: virtiofsd, QEMU start → QMP": g("vmm") - parallel,
    "  API socket, after vmm (off the path)": g("api") - g("vmm"),
    "QMP → kernel → init READY": g("ready") - g("vmm"),
    "  init, in the guest": g("guest:boot"),
    "READY → CLI has it": g("cli:ready") - (sup + g("ready")),
    "start → first workload line": g("start → first workload line"),
    "  CLI start → QMP up (host side, CLI's clock)": sup + g("vmm"),
    "  CLI start → supervisor READY (CLI's clock)": sup + g("ready"),
  };
}
const oursPhases = ours.map(phasesOf);
const floorTotals = floor.map((f) => f["first console line"]!);
const oursTotals = ours.map((o) => o["start → first workload line"]!);
const versusTotals = versus.map((o) => o["start → first workload line"]!);
const stats = (xs: number[]) => {
  const v = xs.filter(Number.isFinite);
  return { min: Math.min(...v), median: median(v), max: Math.max(...v) };
};
const table = (samples: Record<string, number>[]) =>
  Object.keys(samples[0] ?? {}).map((phase) => ({ phase, ...stats(samples.map((s) => s[phase]!)) }));
const fmt = (rows: { phase: string; min: number; median: number; max: number }[]) => {
  const w = Math.max(5, ...rows.map((r) => r.phase.length));
  const n = (x: number) => (Number.isFinite(x) ? x.toFixed(0) : "-").padStart(7);
  return [`${"phase".padEnd(w)}  ${"min".padStart(7)}  ${"median".padStart(7)}  ${"max".padStart(7)}  (ms)`, ...rows.map((r) => `${r.phase.padEnd(w)}  ${n(r.min)}  ${n(r.median)}  ${n(r.max)}`)].join("\n");
};
// Per-round ratios (same round, same load) and the ratio of the medians.
const ratios = oursTotals.map((o, i) => o / floorTotals[i]!);
const ratio = { medianOfRounds: median(ratios), ofMedians: median(oursTotals) / median(floorTotals), min: Math.min(...ratios), max: Math.max(...ratios) };
const versusRatios = versusTotals.map((v, i) => v / floorTotals[i]!);
const versusRatio = versus.length ? { medianOfRounds: median(versusRatios), ofMedians: median(versusTotals) / median(floorTotals), min: Math.min(...versusRatios), max: Math.max(...versusRatios) } : undefined;
// ours − versus in each round (same load): negative when ours is faster.
const deltas = versusTotals.map((v, i) => oursTotals[i]! - v);

let untuned: number | undefined;
if (values["compare-tuning"]) {
  untuned = medians(await measureRawFloor({ kernelPath: kernel.elfPath, runs, accel: accel.accel, busyboxRootfs: rootfs, tcgTuning: false })).find((r) => r.phase === "first console line")?.ms;
}

if (values.json) {
  const ab = versusRatio ? { versus, versusTable: table(versus.map(phasesOf)), versusRatio, deltaMs: { median: median(deltas), min: Math.min(...deltas), max: Math.max(...deltas) } } : {};
  console.log(JSON.stringify({ runs, accel: accel.accel, machine, floor, ours, floorTable: table(floor), oursTable: table(oursPhases), ratio, ...ab, ...(untuned !== undefined ? { untunedFloorFirstLineMs: untuned } : {}) }, null, 2));
} else {
  console.log(formatMachineCosts(machine));
  console.log(`(a) raw floor: QEMU + kernel + virtiofsd + shell init, ${runs} rounds\n${fmt(table(floor))}`);
  console.log(`\n(b) iii-worker start → first workload line, ${runs} rounds, by phase\n${fmt(table(oursPhases))}`);
  console.log(`\n(b) vs (a), interleaved rounds\n${formatBootTable([{ phase: "start → first workload line", ms: median(oursTotals), floorMs: median(floorTotals) }])}`);
  console.log(`per-round ratio: median ${ratio.medianOfRounds.toFixed(2)}, min ${ratio.min.toFixed(2)}, max ${ratio.max.toFixed(2)} (target ≤ 1.5)`);
  if (versusRatio) {
    console.log(`\n(v) --versus ${values.versus}, same rounds, by phase\n${fmt(table(versus.map(phasesOf)))}`);
    console.log(`versus: median ${median(versusTotals).toFixed(0)} ms, ${versusRatio.ofMedians.toFixed(2)}× of the floor's median, per-round ratio median ${versusRatio.medianOfRounds.toFixed(2)} (${versusRatio.min.toFixed(2)}–${versusRatio.max.toFixed(2)})`);
    console.log(`ours − versus per round: median ${median(deltas).toFixed(0)} ms (${Math.min(...deltas).toFixed(0)} … ${Math.max(...deltas).toFixed(0)})`);
  }
  if (untuned !== undefined) console.log(`floor without TCG_BOOT_TUNING: first console line ${untuned.toFixed(0)} ms (median of ${runs})`);
}
