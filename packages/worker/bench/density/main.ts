/**
 * `node bench/density/run.mjs [--n 6] [--memory 128Mi] [--settle-seconds 15] [--idle-seconds 20] [--json]`: host cost of idle busybox
 * workers (`sh -c 'echo …; exec sleep'`), one alone and then N at once. Per worker and process (supervisor, its
 * FUSE server, virtiofsd, QEMU): RSS (VmRSS) and PSS (Pss of /proc/PID/smaps_rollup, which shares the pages
 * several processes map — Node's binary and libraries across supervisors and FUSE servers — among them), the
 * worker's total and total/QEMU, and the idle CPU of all its processes over the idle window, in % of one core.
 * The issue's targets are stated in RSS ("host RSS per idle worker ≤ 1.3× QEMU alone", "QEMU's RSS ≤ 200 MiB");
 * both columns are printed and the verdict lines say which one they use.
 *
 * `--versus <other build's dist/cli.js> [--rounds 3]`: an A/B instead. Each round starts N workers of this build
 * and N of the other at once, alternately (so both share the host, its load and node's pages alike), lets them
 * settle and idle, and compares the mean per-worker total RSS and PSS: this / versus, min/median/max over rounds.
 */
import { existsSync, mkdtempSync, readFileSync, rmSync } from "node:fs";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { parseArgs } from "node:util";
import { setTimeout as sleep } from "node:timers/promises";
import { managedDir } from "../../src/paths.js";
import { buildBusyboxRootfs } from "../boot/raw-floor.js";
import { runCli } from "../boot/worker-boot.js";

const { values } = parseArgs({
  options: {
    n: { type: "string", default: "6" },
    memory: { type: "string", default: "128Mi" },
    "idle-seconds": { type: "string", default: "20" },
    // Past the supervisor's idle trim (one full GC in it and its FUSE server, one idle tick of 2 s after READY:
    // src/supervisor/idle-trim.ts) and the GCs V8's memory reducer runs ~8 s after that (~60 and ~40 ms of CPU,
    // once): with 3 s, six workers' window held the last ones' (2.2 % of a core instead of 1.6).
    "settle-seconds": { type: "string", default: "15" },
    json: { type: "boolean", default: false },
    versus: { type: "string" },
    rounds: { type: "string", default: "3" },
  },
});
const n = Number(values.n);
const idleMs = Number(values["idle-seconds"]) * 1000;
const settleMs = Number(values["settle-seconds"]) * 1000;
if (!Number.isInteger(n) || n < 1) throw new Error(`--n must be a positive integer, got ${values.n}`);
if (!(idleMs > 0) || !(settleMs >= 0)) throw new Error("--idle-seconds must be > 0 and --settle-seconds ≥ 0");

const CLI = fileURLToPath(new URL("../../dist/cli.js", import.meta.url));
if (!existsSync(CLI)) throw new Error(`${CLI} is missing: build @iii/worker first`);
const ROLES = ["supervisor", "iii-fs", "virtiofsd", "qemu"] as const;
type Role = (typeof ROLES)[number];
const MiB = 1024 * 1024;
const TICK_MS = 1000 / 100; // USER_HZ

function kib(text: string, field: string): number {
  return Number(new RegExp(`^${field}:\\s+(\\d+) kB`, "m").exec(text)?.[1] ?? NaN) * 1024;
}
const rss = (pid: number) => kib(readFileSync(`/proc/${pid}/status`, "utf8"), "VmRSS");
const pss = (pid: number) => kib(readFileSync(`/proc/${pid}/smaps_rollup`, "utf8"), "Pss");
/** utime + stime of a process, in ms. */
function cpuMs(pid: number): number {
  const stat = readFileSync(`/proc/${pid}/stat`, "utf8");
  const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
  return (Number(fields[11]) + Number(fields[12])) * TICK_MS;
}

interface Proc {
  worker: string;
  role: Role;
  pid: number;
}

function processesOf(worker: string, env: NodeJS.ProcessEnv, cwd: string): Proc[] {
  const vm = JSON.parse(readFileSync(join(managedDir(worker, env, cwd), "vm.json"), "utf8")) as { pid: number; children: { name: string; pid: number }[] };
  const out: Proc[] = [{ worker, role: "supervisor", pid: vm.pid }];
  for (const c of vm.children) {
    const role = ROLES.find((r) => c.name === r || c.name.startsWith(`${r}:`));
    if (role) out.push({ worker, role, pid: c.pid });
  }
  return out;
}

interface WorkerRow {
  worker: string;
  rss: Record<Role | "total", number>;
  pss: Record<Role | "total", number>;
  /** % of one core over the idle window, per process role and in total. */
  cpu: Record<Role | "total", number>;
}

/**
 * Starts `count` idle workers, lets them settle, samples memory and the CPU they use over the idle window. With
 * `clis`, worker i is added and started by clis[i % clis.length] (the A/B: one project, each build's own workers).
 */
async function measure(count: number, rootfs: string, clis: string[] = [CLI]): Promise<WorkerRow[]> {
  const work = mkdtempSync(join("/tmp", "iii-bench-d-"));
  const env = { III_HOME: join(work, "h") };
  const names = Array.from({ length: count }, (_, i) => `idle${i}`);
  const cliOf = (i: number) => clis[i % clis.length]!;
  try {
    for (const [i, name] of names.entries()) {
      const added = await runCli(["add", `dir:${rootfs}`, "--name", name, "--cpus", "1", "--memory", values.memory!, "--", "sh", "-c", "echo idle; exec sleep 100000"], work, env, cliOf(i));
      if (added.code !== 0) throw new Error(`add ${name} failed: ${added.stderr}`);
    }
    for (const [i, name] of names.entries()) {
      const started = await runCli(["start", name], work, env, cliOf(i));
      if (started.code !== 0) throw new Error(`start ${name} failed: ${started.stderr}`);
    }
    await sleep(settleMs);
    const procs = names.flatMap((name) => processesOf(name, env, work));
    const cpu0 = new Map(procs.map((p) => [p.pid, cpuMs(p.pid)]));
    const t0 = performance.now();
    await sleep(idleMs);
    const elapsed = performance.now() - t0;
    const cpu = new Map(procs.map((p) => [p.pid, ((cpuMs(p.pid) - cpu0.get(p.pid)!) / elapsed) * 100]));
    return names.map((worker) => {
      const mine = procs.filter((p) => p.worker === worker);
      const sum = (f: (pid: number) => number, role?: Role) => mine.filter((p) => !role || p.role === role).reduce((a, p) => a + f(p.pid), 0);
      const by = (f: (pid: number) => number) => Object.fromEntries([...ROLES.map((r) => [r, sum(f, r)]), ["total", sum(f)]]) as Record<Role | "total", number>;
      return {
        worker,
        rss: by(rss),
        pss: by(pss),
        cpu: by((pid) => cpu.get(pid)!),
      };
    });
  } finally {
    for (const [i, name] of names.entries()) await runCli(["stop", name, "--timeout", "1"], work, env, cliOf(i));
    rmSync(work, { recursive: true, force: true });
  }
}

function format(title: string, rows: WorkerRow[]): string {
  const m = (x: number) => (x / MiB).toFixed(1).padStart(6);
  const head = `${"worker".padEnd(8)} ${ROLES.map((r) => `${r} rss/pss`.padStart(19)).join(" ")} ${"total rss/pss".padStart(15)} ${"tot/qemu rss/pss".padStart(16)} ${"cpu % (sup/fs/vfsd/qemu)".padStart(32)}`;
  const line = (r: WorkerRow) =>
    `${r.worker.padEnd(8)} ${ROLES.map((role) => `${m(r.rss[role])}/${m(r.pss[role])}`.padStart(19)).join(" ")} ${`${m(r.rss.total)}/${m(r.pss.total)}`.padStart(15)} ${`${(r.rss.total / r.rss.qemu).toFixed(2)}/${(r.pss.total / r.pss.qemu).toFixed(2)}`.padStart(16)} ${`${r.cpu.total.toFixed(2)} (${ROLES.map((role) => r.cpu[role].toFixed(2)).join("/")})`.padStart(32)}`;
  const avg = (f: (r: WorkerRow) => number) => rows.reduce((a, r) => a + f(r), 0) / rows.length;
  const mean: WorkerRow = {
    worker: "mean",
    rss: Object.fromEntries([...ROLES, "total"].map((k) => [k, avg((r) => r.rss[k as Role])])) as WorkerRow["rss"],
    pss: Object.fromEntries([...ROLES, "total"].map((k) => [k, avg((r) => r.pss[k as Role])])) as WorkerRow["pss"],
    cpu: Object.fromEntries([...ROLES, "total"].map((k) => [k, avg((r) => r.cpu[k as Role])])) as WorkerRow["cpu"],
  };
  return [`${title} (MiB; cpu: % of one core over ${idleMs / 1000} s idle)`, head, ...rows.map(line), ...(rows.length > 1 ? [line(mean)] : [])].join("\n");
}

function verdict(rows: WorkerRow[]): string {
  const avg = (f: (r: WorkerRow) => number) => rows.reduce((a, r) => a + f(r), 0) / rows.length;
  const ratioRss = avg((r) => r.rss.total / r.rss.qemu);
  const ratioPss = avg((r) => r.pss.total / r.pss.qemu);
  const qemuRss = avg((r) => r.rss.qemu) / MiB;
  const cpu = avg((r) => r.cpu.total);
  const ok = (b: boolean) => (b ? "met" : "NOT met");
  return [
    `host memory per idle worker / QEMU alone: ${ratioRss.toFixed(2)} by RSS (the target's measure: ≤ 1.3, ${ok(ratioRss <= 1.3)}), ${ratioPss.toFixed(2)} by PSS`,
    `QEMU RSS for a ${values.memory} TCG guest: ${qemuRss.toFixed(1)} MiB (target ≤ 200, ${ok(qemuRss <= 200)})`,
    `idle CPU per VM (all its processes): ${cpu.toFixed(2)}% of a core (target ≤ 2, ${ok(cpu <= 2)})`,
  ].join("\n");
}

/** The A/B: per round, N workers of each build at once; this / versus of the mean per-worker totals. */
async function versus(other: string, rounds: number, rootfs: string): Promise<void> {
  if (!existsSync(other)) throw new Error(`--versus ${other}: no such file`);
  const mean = (rows: WorkerRow[], f: (r: WorkerRow) => number) => rows.reduce((a, r) => a + f(r), 0) / rows.length;
  const ratios: { rss: number[]; pss: number[] } = { rss: [], pss: [] };
  const lines: string[] = [];
  for (let round = 0; round < rounds; round++) {
    // Which build starts first alternates too.
    const clis = round % 2 === 0 ? [CLI, other] : [other, CLI];
    const rows = await measure(2 * n, rootfs, clis);
    const ours = rows.filter((_, i) => clis[i % 2] === CLI);
    const theirs = rows.filter((_, i) => clis[i % 2] !== CLI);
    const m = (rs: WorkerRow[]) =>
      `total ${(mean(rs, (r) => r.rss.total) / MiB).toFixed(1)}/${(mean(rs, (r) => r.pss.total) / MiB).toFixed(1)} (supervisor ${(mean(rs, (r) => r.rss.supervisor) / MiB).toFixed(1)}/${(mean(rs, (r) => r.pss.supervisor) / MiB).toFixed(1)}, iii-fs ${(mean(rs, (r) => r.rss["iii-fs"]) / MiB).toFixed(1)}/${(mean(rs, (r) => r.pss["iii-fs"]) / MiB).toFixed(1)}, qemu ${(mean(rs, (r) => r.rss.qemu) / MiB).toFixed(1)}/${(mean(rs, (r) => r.pss.qemu) / MiB).toFixed(1)})`;
    ratios.rss.push(mean(ours, (r) => r.rss.total) / mean(theirs, (r) => r.rss.total));
    ratios.pss.push(mean(ours, (r) => r.pss.total) / mean(theirs, (r) => r.pss.total));
    lines.push(`round ${round + 1}: this ${m(ours)}\n         versus ${m(theirs)}`);
    console.error(lines.at(-1));
  }
  const spread = (xs: number[]) => {
    const s = [...xs].sort((a, b) => a - b);
    return `${s[0]!.toFixed(3)}/${s[Math.floor(s.length / 2)]!.toFixed(3)}/${s.at(-1)!.toFixed(3)}`;
  };
  console.log(`density A/B, ${n} idle workers of each build at once, ${rounds} rounds (MiB, RSS/PSS per worker, all its processes)`);
  console.log(lines.join("\n"));
  console.log(`this / versus per-worker total (min/median/max): RSS ${spread(ratios.rss)}, PSS ${spread(ratios.pss)}`);
}

const rootfs = buildBusyboxRootfs();
if (values.versus) {
  await versus(values.versus, Number(values.rounds), rootfs);
  process.exit(0);
}
console.error(`density: 1 worker, then ${n}, ${values.memory} each; settle ${settleMs / 1000} s, idle window ${idleMs / 1000} s`);
const alone = await measure(1, rootfs);
const many = n > 1 ? await measure(n, rootfs) : [];
if (values.json) {
  console.log(JSON.stringify({ n, memory: values.memory, idleMs, alone, many }, null, 2));
} else {
  console.log(format("1 worker alone", alone));
  console.log(verdict(alone));
  if (many.length) {
    console.log(`\n${format(`${n} workers at once`, many)}`);
    console.log(verdict(many));
  }
}
