/**
 * `node bench/wasm/run.mjs [--rounds N] [--invocations K] [--no-vm]`: the WASM tier against the VM tier, in one run.
 *
 *   cold start → first output line   `iii-worker start` of a stopped worker until its first stdout line is in the
 *                                     log: a preview 1 module (examples/wasm-p1), a preview 2 command component
 *                                     (jco transpilation cached: the first start, which transpiles, is reported on
 *                                     its own), and the baseline, a VM worker on the busybox rootfs the boot
 *                                     bench uses, whose workload echoes a line.
 *   engine invocation round trip     the engine stand-in invoking wasm::greet in the example component
 *                                     (examples/wasm-worker) against hello::greet of examples/hello-worker
 *                                     running in a microVM under `iii-worker dev` (the README's demo).
 *
 * Cases run interleaved, one of each per round, so machine load hits them alike; each row prints min / median /
 * max, and `ratio` is WASM median / VM median (below 1: WASM faster). --no-vm prints the WASM rows alone.
 */
import { execFileSync, spawn, type ChildProcess } from "node:child_process";
import { cpSync, existsSync, mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { parseArgs } from "node:util";
import { componentNew, preview1AdapterCommandPath } from "@bytecodealliance/jco";
import { startEngineStandin } from "../../../../tools/engine-standin/src/index.js";
import { managedDir } from "../../src/paths.js";
import { exitWith, wat } from "../../test/wasm/wat.js";
import { vmSkipReason } from "../../test/worker-vm/harness.js";
import { buildBusyboxRootfs, median } from "../boot/raw-floor.js";
import { msUntilLogHas } from "../boot/worker-boot.js";

const { values } = parseArgs({
  options: { rounds: { type: "string", default: "5" }, invocations: { type: "string", default: "20" }, "no-vm": { type: "boolean", default: false } },
});
const rounds = Number(values.rounds);
const invocations = Number(values.invocations);
if (!Number.isInteger(rounds) || rounds < 1 || !Number.isInteger(invocations) || invocations < 1) {
  console.error("wasm bench: --rounds and --invocations need positive whole numbers");
  process.exit(2);
}
const REPO = fileURLToPath(new URL("../../../../", import.meta.url));
const CLI = fileURLToPath(new URL("../../dist/cli.js", import.meta.url));
const FIRST_LINE = "iii-bench-first-line";
const work = mkdtempSync(join(tmpdir(), "iii-bench-wasm-"));
const env = { ...process.env, III_HOME: join(work, "home") };
const children: ChildProcess[] = [];

function cli(args: string[], cwd = work): Promise<{ code: number | null; stderr: string }> {
  return new Promise((resolve) => {
    const child = spawn(process.execPath, [CLI, ...args], { cwd, env, stdio: ["ignore", "ignore", "pipe"] });
    let stderr = "";
    child.stderr.on("data", (d) => (stderr += d));
    child.on("close", (code) => resolve({ code, stderr }));
  });
}

async function must(args: string[], cwd = work): Promise<void> {
  const r = await cli(args, cwd);
  if (r.code !== 0) throw new Error(`iii-worker ${args.join(" ")}: ${r.stderr.trim()}`);
}

/** `start` → the worker's first stdout line containing `marker`, in ms; then the worker is stopped. */
async function coldStart(name: string, marker: string): Promise<number> {
  const log = join(managedDir(name, env, work), "logs/stdout.log");
  const before = existsSync(log) ? statSync(log).size : 0;
  const t0 = performance.now();
  const started = cli(["start", name]);
  const ms = await msUntilLogHas(log, before, marker, t0);
  const r = await started;
  if (r.code !== 0) throw new Error(`start ${name}: ${r.stderr.trim()}`);
  await cli(["stop", name, "--timeout", "1"]);
  return ms;
}

interface Row {
  name: string;
  samples: number[];
}
const stats = (xs: number[]) => {
  const finite = xs.filter(Number.isFinite);
  return { min: Math.min(...finite), median: median(finite), max: Math.max(...finite) };
};
const fmt = (r: Row) => {
  const s = stats(r.samples);
  return `${r.name.padEnd(44)} ${s.min.toFixed(1).padStart(9)} ${s.median.toFixed(1).padStart(9)} ${s.max.toFixed(1).padStart(9)}`;
};

try {
  const vmSkip = values["no-vm"] ? "--no-vm" : vmSkipReason();
  // --- the workers ---
  execFileSync(process.execPath, [join(REPO, "examples/wasm-p1/build.mjs"), join(work, "p1.wasm")]);
  writeFileSync(join(work, "p2.wasm"), await componentNew(await wat(exitWith(0, `${FIRST_LINE}\n`)), [["wasi_snapshot_preview1", readFileSync(preview1AdapterCommandPath())]]));
  console.error("wasm bench: building examples/wasm-worker (jco componentize)");
  execFileSync(process.execPath, [join(REPO, "examples/wasm-worker/build.mjs"), join(work, "greet.wasm")]);
  await must(["add", "./p1.wasm", "--name", "p1"]);
  await must(["add", "./p2.wasm", "--name", "p2"]);
  await must(["add", "./greet.wasm", "--name", "greet"]);
  if (!vmSkip) await must(["add", `dir:${buildBusyboxRootfs()}`, "--name", "vm", "--cpus", "1", "--memory", "256Mi", "--", "sh", "-c", `echo ${FIRST_LINE}; exec sleep 1000`]);

  // --- cold starts ---
  const transpile = await coldStart("p2", FIRST_LINE); // the first start of a component transpiles it
  const cold: Record<string, Row> = {
    p1: { name: "cold start → first line: p1 module", samples: [] },
    p2: { name: "cold start → first line: p2 component", samples: [] },
    vm: { name: "cold start → first line: VM worker (baseline)", samples: [] },
  };
  for (let r = 0; r < rounds; r++) {
    cold.p1!.samples.push(await coldStart("p1", "hello from a WASI preview 1 module"));
    cold.p2!.samples.push(await coldStart("p2", FIRST_LINE));
    if (!vmSkip) cold.vm!.samples.push(await coldStart("vm", FIRST_LINE));
    console.error(`  round ${r + 1}: p1 ${cold.p1!.samples.at(-1)!.toFixed(0)} ms, p2 ${cold.p2!.samples.at(-1)!.toFixed(0)} ms${vmSkip ? "" : `, vm ${cold.vm!.samples.at(-1)!.toFixed(0)} ms`}`);
  }

  // --- engine invocation round trips ---
  await using engine = await startEngineStandin({ port: 0 });
  await must(["start", "greet", "--engine-url", engine.url]);
  await engine.waitForFunction("wasm::greet", { timeoutMs: 60_000 });
  let dev: ChildProcess | undefined;
  if (!vmSkip) {
    console.error("wasm bench: starting examples/hello-worker under iii-worker dev (node dev image; first run builds it)");
    const layout = execFileSync(join(REPO, "images/build.sh"), ["node"], { encoding: "utf8", timeout: 900_000 }).trim();
    const project = join(work, "hello-worker");
    cpSync(join(REPO, "examples/hello-worker"), project, { recursive: true, filter: (s) => !/\/(node_modules|\.iii)(\/|$)/.test(s.slice(REPO.length)) });
    dev = spawn(process.execPath, [CLI, "dev", project, "--engine-url", engine.url.replace("127.0.0.1", "localhost")], {
      cwd: work,
      env: { ...env, III_DEV_IMAGE_NODE: `oci:${layout}:latest` },
      stdio: ["ignore", "ignore", "inherit"],
    });
    children.push(dev);
    await engine.waitForFunction("hello::greet", { timeoutMs: 600_000 });
  }
  const rtt: Record<string, Row> = {
    wasm: { name: "invocation round trip: wasm::greet (component)", samples: [] },
    vm: { name: "invocation round trip: hello::greet (VM, baseline)", samples: [] },
  };
  const time = async (id: string) => {
    const t0 = performance.now();
    await engine.invoke(id, { name: "bench" });
    return performance.now() - t0;
  };
  await time("wasm::greet"); // warm-up: first invocations compile and connect
  if (dev) await time("hello::greet");
  for (let r = 0; r < rounds * invocations; r++) {
    rtt.wasm!.samples.push(await time("wasm::greet"));
    if (dev) rtt.vm!.samples.push(await time("hello::greet"));
  }
  await cli(["stop", "greet", "--timeout", "1"]);
  if (dev) {
    dev.kill("SIGINT");
    await new Promise((r) => dev!.once("exit", r));
  }

  // --- report ---
  console.log(`WASM tier vs VM tier, ${rounds} rounds interleaved (${rounds * invocations} invocations each); ms`);
  console.log(`${"case".padEnd(44)} ${"min".padStart(9)} ${"median".padStart(9)} ${"max".padStart(9)}`);
  console.log(`${"p2 component first start (jco transpile)".padEnd(44)} ${transpile.toFixed(1).padStart(29)}`);
  const rows = vmSkip ? [cold.p1!, cold.p2!, rtt.wasm!] : [cold.p1!, cold.p2!, cold.vm!, rtt.wasm!, rtt.vm!];
  for (const r of rows) console.log(fmt(r));
  if (vmSkip) {
    console.log(`VM baseline skipped: ${vmSkip}`);
  } else {
    const ratio = (a: Row, b: Row) => (stats(a.samples).median / stats(b.samples).median).toFixed(3);
    console.log(`\n${"ratio (WASM median / VM median; below 1: WASM faster)".padEnd(60)}`);
    console.log(`${"cold start, p1 module / VM".padEnd(44)} ${ratio(cold.p1!, cold.vm!).padStart(9)}`);
    console.log(`${"cold start, p2 component / VM".padEnd(44)} ${ratio(cold.p2!, cold.vm!).padStart(9)}`);
    console.log(`${"invocation round trip, component / VM".padEnd(44)} ${ratio(rtt.wasm!, rtt.vm!).padStart(9)}`);
  }
} finally {
  for (const c of children) if (c.exitCode === null) c.kill("SIGKILL");
  for (const name of ["p1", "p2", "greet", "vm"]) await cli(["stop", name, "--timeout", "1"]).catch(() => undefined);
  rmSync(work, { recursive: true, force: true });
}
