/**
 * `node bench/exec/run.mjs [--runs N]`: exec round trip of `true` in a running VM (median of N, default 100),
 * split into host API, control channel and in-guest spawn; and the time from a workload restart (what dev
 * mode's hot reload does) to the new workload's first line, against a full stop + start.
 */
import { spawn } from "node:child_process";
import { existsSync, mkdtempSync, readFileSync, rmSync, statSync } from "node:fs";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { parseArgs } from "node:util";
import { setTimeout as sleep } from "node:timers/promises";
import { SupervisorClient } from "../../src/api/client.js";
import { managedDir } from "../../src/paths.js";
import { buildBusyboxRootfs, median } from "../boot/raw-floor.js";

const { values } = parseArgs({ options: { runs: { type: "string", default: "100" } } });
const runs = Number(values.runs);
const CLI = fileURLToPath(new URL("../../dist/cli.js", import.meta.url));
const work = mkdtempSync("/tmp/iii-bench-exec-");
const env = { ...process.env, III_HOME: join(work, "h") };

function cli(args: string[]): Promise<{ code: number | null; stderr: string }> {
  return new Promise((resolve) => {
    const child = spawn(process.execPath, [CLI, ...args], { cwd: work, env, stdio: ["ignore", "ignore", "pipe"] });
    let stderr = "";
    child.stderr.on("data", (d) => (stderr += d));
    child.on("close", (code) => resolve({ code, stderr }));
  });
}

async function must(args: string[]): Promise<void> {
  const r = await cli(args);
  if (r.code !== 0) throw new Error(`iii-worker ${args.join(" ")}: ${r.stderr}`);
}

const stdoutLog = join(managedDir("ex", env, work), "logs/stdout.log");
const size = () => (existsSync(stdoutLog) ? statSync(stdoutLog).size : 0);
async function firstLineAfter(offset: number, t0: number): Promise<number> {
  while (performance.now() - t0 < 120_000) {
    if (size() > offset && readFileSync(stdoutLog).subarray(offset).includes("started-")) return performance.now() - t0;
    await sleep(5);
  }
  return NaN;
}

try {
  await must(["add", `dir:${buildBusyboxRootfs()}`, "--name", "ex", "--cpus", "1", "--memory", "256Mi", "--", "sh", "-c", "echo started-$$; exec sleep 100000"]);
  await must(["start", "ex"]);
  const client = SupervisorClient.forWorker("ex", env, work);
  const total: number[] = [];
  const api: number[] = [];
  const rtt: number[] = [];
  for (let i = 0; i < runs; i++) {
    const t0 = performance.now();
    const exit = await client.exec({ argv: ["true"] }, { stdout: () => {}, stderr: () => {} });
    total.push(performance.now() - t0);
    if (exit.code !== 0) throw new Error(`true exited ${exit.code}`);
    const t1 = performance.now();
    rtt.push(await client.ping());
    api.push(performance.now() - t1 - rtt[rtt.length - 1]!);
  }
  const t = median(total);
  const a = median(api);
  const c = median(rtt);
  console.log(`exec round trip of \`true\`, median of ${runs}`);
  console.log(`${"part".padEnd(34)}  ${"ms".padStart(8)}`);
  console.log(`${"total (CLI client → exit frame)".padEnd(34)}  ${t.toFixed(1).padStart(8)}`);
  console.log(`${"  host API (HTTP over api.sock)".padEnd(34)}  ${a.toFixed(1).padStart(8)}`);
  console.log(`${"  control channel round trip".padEnd(34)}  ${c.toFixed(1).padStart(8)}`);
  console.log(`${"  in-guest spawn + attach + rest".padEnd(34)}  ${(t - a - c).toFixed(1).padStart(8)}`);

  const reload: number[] = [];
  const full: number[] = [];
  for (let i = 0; i < 5; i++) {
    let offset = size();
    let t0 = performance.now();
    await client.restart(1_000);
    reload.push(await firstLineAfter(offset, t0));
    offset = size();
    t0 = performance.now();
    await must(["stop", "ex", "--timeout", "1"]);
    await must(["start", "ex"]);
    full.push(await firstLineAfter(offset, t0));
  }
  const r = median(reload);
  const f = median(full);
  console.log(`\nworkload restart → first line vs full stop + start, median of 5`);
  console.log(`${"metric".padEnd(34)}  ${"ours".padStart(8)}  ${"baseline".padStart(8)}  ratio`);
  console.log(`${"restart (ms) vs stop+start (ms)".padEnd(34)}  ${r.toFixed(0).padStart(8)}  ${f.toFixed(0).padStart(8)}  ${(r / f).toFixed(2)}`);
} finally {
  await cli(["stop", "ex", "--timeout", "1"]);
  rmSync(work, { recursive: true, force: true });
}
