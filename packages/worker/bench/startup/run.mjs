#!/usr/bin/env node
// `node bench/startup/run.mjs [--rounds N]`: the CLI's start-up cost, as issue 18 states it.
//
//   iii-worker --help          against `node -e 0`, measured in the same run (target: ratio <= 1.5)
//   iii worker --help          the same through the engine shim (which runs iii-worker in its own process)
//   exec round trip            only with III_BENCH_WORKER=<a running VM worker of ./iii.workers.yaml>:
//                              `iii-worker exec W -- true` and `iii worker exec W -- true` end to end, against
//                              the API round trip (an in-process exec of `true` over api.sock) + `node -e 0`
//                              (target: ratio <= 2)
//
// Cases run interleaved (one of each per round, after one warm-up round that also fills V8's compile cache), so
// load on the machine hits them alike. Prints `name  min  median  max` in ms, then `name  ours  baseline  ratio`.
import { spawnSync } from "node:child_process";
import { fileURLToPath, pathToFileURL } from "node:url";
import { performance } from "node:perf_hooks";

const args = process.argv.slice(2);
const roundsArg = args.indexOf("--rounds");
const rounds = roundsArg >= 0 ? Number(args[roundsArg + 1]) : 15;
if (!Number.isInteger(rounds) || rounds < 1) {
  console.error("startup bench: --rounds needs a positive whole number");
  process.exit(2);
}
const workerCli = fileURLToPath(new URL("../../dist/cli.js", import.meta.url));
const engineCli = fileURLToPath(new URL("../../../engine/dist/cli.js", import.meta.url));
const node = process.execPath;
const worker = process.env.III_BENCH_WORKER;

function timeSpawn(argv) {
  const started = performance.now();
  const run = spawnSync(node, argv, { stdio: ["ignore", "ignore", "pipe"], env: process.env });
  const ms = performance.now() - started;
  if (run.status !== 0) throw new Error(`${argv.join(" ")} exited ${run.status}: ${String(run.stderr).trim()}`);
  return ms;
}

const cases = [
  { name: "node -e 0", run: () => timeSpawn(["-e", "0"]) },
  { name: "iii-worker --help", run: () => timeSpawn([workerCli, "--help"]) },
  { name: "iii worker --help", run: () => timeSpawn([engineCli, "worker", "--help"]) },
];

let apiExec;
let skipExec = worker ? undefined : "set III_BENCH_WORKER to the name of a running VM worker of ./iii.workers.yaml to measure it";
if (worker) {
  const { workerStatus } = await import(pathToFileURL(fileURLToPath(new URL("../../dist/index.js", import.meta.url))).href);
  const status = await workerStatus(worker);
  if (status.state !== "running") skipExec = `worker "${worker}" of ${process.cwd()} is ${status.state}, not running`;
}
if (!skipExec) {
  const { SupervisorClient } = await import(pathToFileURL(fileURLToPath(new URL("../../dist/index.js", import.meta.url))).href);
  const client = SupervisorClient.forWorker(worker);
  apiExec = async () => {
    const started = performance.now();
    const exit = await client.exec({ argv: ["true"], env: {}, tty: false, timeoutMs: 0, stdin: false, onDisconnect: "kill" }, { stdout() {}, stderr() {} });
    if (exit.code !== 0) throw new Error(`exec true in ${worker} exited ${exit.code}`);
    return performance.now() - started;
  };
  cases.push(
    { name: "api exec round trip", run: apiExec },
    { name: "iii-worker exec -- true", run: () => timeSpawn([workerCli, "exec", worker, "--", "true"]) },
    { name: "iii worker exec -- true", run: () => timeSpawn([engineCli, "worker", "exec", worker, "--", "true"]) },
  );
}

const samples = new Map(cases.map((c) => [c.name, []]));
for (let round = 0; round <= rounds; round++) {
  for (const c of cases) {
    const ms = await c.run();
    if (round > 0) samples.get(c.name).push(ms); // round 0 warms up
  }
}

const stats = (values) => {
  const sorted = [...values].sort((a, b) => a - b);
  const median = sorted.length % 2 ? sorted[(sorted.length - 1) / 2] : (sorted[sorted.length / 2 - 1] + sorted[sorted.length / 2]) / 2;
  return { min: sorted[0], median, max: sorted.at(-1) };
};
const fmt = (ms) => ms.toFixed(1).padStart(8);
console.log(`startup bench: ${rounds} interleaved rounds (ms)`);
console.log(`${"name".padEnd(26)}${"min".padStart(8)}${"median".padStart(8)}${"max".padStart(8)}`);
const s = Object.fromEntries(cases.map((c) => [c.name, stats(samples.get(c.name))]));
for (const c of cases) console.log(`${c.name.padEnd(26)}${fmt(s[c.name].min)}${fmt(s[c.name].median)}${fmt(s[c.name].max)}`);

console.log("");
console.log(`${"name".padEnd(26)}${"ours".padStart(8)}${"baseline".padStart(10)}${"ratio".padStart(8)}  target`);
const base = s["node -e 0"].median;
const ratioLine = (name, baseline, target) => {
  const ours = s[name].median;
  const ratio = ours / baseline;
  console.log(`${name.padEnd(26)}${fmt(ours)}${fmt(baseline).padStart(10)}${ratio.toFixed(2).padStart(8)}  <= ${target}${ratio <= target ? "" : "  (over)"}`);
};
ratioLine("iii-worker --help", base, 1.5);
ratioLine("iii worker --help", base, 1.5);
if (!skipExec) {
  const floor = s["api exec round trip"].median + base;
  ratioLine("iii-worker exec -- true", floor, 2);
  ratioLine("iii worker exec -- true", floor, 2);
} else {
  console.log(`exec round trip: skipped (${skipExec})`);
}
