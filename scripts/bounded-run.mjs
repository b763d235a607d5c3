#!/usr/bin/env node
// Runs a package's test command with a time budget, so that one hung test run costs CI its budget and not the
// whole CI time (a run that hung for over an hour hid every package after it). Past the budget it prints what
// each process of the run is doing (state, wait channel, kernel stack: a hang in a FUSE request or a VM shows
// there), and the FUSE mounts with requests waiting, then ends every one of those processes and exits 124.
//
//   node ../../scripts/bounded-run.mjs <budget-seconds> <command> [args...]
//
// III_TEST_BUDGET_SCALE (a positive number) multiplies every budget: a slower machine's knob.
import { spawn } from "node:child_process";
import fs from "node:fs";

const [budgetArg, command, ...args] = process.argv.slice(2);
const scale = Number(process.env.III_TEST_BUDGET_SCALE ?? "1");
const budgetS = Number(budgetArg) * scale;
if (!command || !Number.isFinite(budgetS) || budgetS <= 0) {
  console.error("bounded-run: usage: bounded-run.mjs <budget-seconds> <command> [args...] (budget and III_TEST_BUDGET_SCALE positive numbers)");
  process.exit(2);
}
const label = process.env.npm_package_name ?? command;

// Interactive runs keep the terminal; under turbo (a pipe) the output goes through this process, so that a
// process that outlives its kill cannot hold turbo's pipe open.
const piped = !process.stdout.isTTY;
// Every process of the run carries this mark in its environment unless it clears it: a daemon that left the
// tree (a worker's supervisor, reparented to init when the CLI that spawned it exited) is still found by it.
const MARK = `III_BOUNDED_RUN=${process.pid}.${Date.now()}`;
const child = spawn(command, args, {
  stdio: piped ? ["inherit", "pipe", "pipe"] : "inherit",
  detached: true,
  env: { ...process.env, III_BOUNDED_RUN: MARK.slice(MARK.indexOf("=") + 1) },
});
if (piped) {
  child.stdout.pipe(process.stdout);
  child.stderr.pipe(process.stderr);
}
child.on("error", (err) => {
  console.error(`bounded-run: cannot start ${command}: ${err.message}`);
  process.exit(127);
});

let expired = false;
const timer = setTimeout(() => void expire(), budgetS * 1000);
child.on("exit", (code, signal) => {
  if (expired) return;
  clearTimeout(timer);
  const status = code ?? 128 + (signal === "SIGKILL" ? 9 : 15);
  // The output drains on "close"; a leftover process of the run holding the pipe must not keep this one.
  child.on("close", () => process.exit(status));
  setTimeout(() => process.exit(status), 3000).unref();
});
for (const sig of ["SIGINT", "SIGTERM", "SIGHUP"]) {
  process.on(sig, () => {
    void signalTree(sig);
    setTimeout(() => process.exit(130), 10_000).unref();
  });
}

function read(p) {
  try {
    return fs.readFileSync(p, "utf8");
  } catch {
    return null;
  }
}

/** pid → { ppid, comm, state } for every process now. */
function processTable() {
  const table = new Map();
  for (const name of fs.readdirSync("/proc")) {
    if (!/^\d+$/.test(name)) continue;
    const stat = read(`/proc/${name}/stat`);
    if (!stat) continue;
    // "pid (comm) S ppid ...": comm may hold spaces and parentheses; the fields follow the last ')'.
    const close = stat.lastIndexOf(")");
    const rest = stat.slice(close + 2).split(" ");
    table.set(Number(name), { ppid: Number(rest[1]), pgid: Number(rest[2]), comm: stat.slice(stat.indexOf("(") + 1, close), state: rest[0] });
  }
  return table;
}

/** Whether a process's environment holds the mark; read off the main thread (it takes the target's mm lock). */
function marked(pid) {
  const env = fs.promises.readFile(`/proc/${pid}/environ`, "latin1").then((e) => e.split("\0").includes(MARK), () => false);
  return Promise.race([env, new Promise((r) => setTimeout(() => r(false), 1000).unref())]);
}

/**
 * The child and everything below it: by parent links, by its process group (setsid'd daemons included), and by
 * the mark (daemons reparented out of the tree), with their descendants.
 */
async function treePids() {
  const table = processTable();
  const pids = new Set([child.pid]);
  const candidates = [...table.keys()].filter((pid) => pid !== process.pid);
  const marks = await Promise.all(candidates.map((pid) => marked(pid)));
  candidates.forEach((pid, i) => marks[i] && pids.add(pid));
  let grew = true;
  while (grew) {
    grew = false;
    for (const [pid, p] of table) {
      if (!pids.has(pid) && (pids.has(p.ppid) || p.pgid === child.pid)) {
        pids.add(pid);
        grew = true;
      }
    }
  }
  return { pids: [...pids].filter((pid) => table.has(pid)), table };
}

async function signalTree(sig) {
  for (const pid of (await treePids()).pids) {
    try {
      process.kill(pid, sig);
    } catch {
      // gone already
    }
  }
}

/** The command line, read off the main thread: reading it takes the target's mm lock, which a hung fault may hold. */
async function cmdline(pid) {
  const text = fs.promises.readFile(`/proc/${pid}/cmdline`, "utf8").then((s) => s.replaceAll("\0", " ").trim(), () => "");
  const late = new Promise((r) => setTimeout(() => r("(command line unreadable: its memory lock is held)"), 1000).unref());
  return Promise.race([text, late]);
}

async function report() {
  const { pids, table } = await treePids();
  const lines = [];
  for (const pid of pids) {
    const p = table.get(pid);
    const cmd = (await cmdline(pid)).slice(0, 300);
    lines.push(`  ${pid} (parent ${p.ppid}) ${p.comm} state=${p.state}: ${cmd}`);
    let tids = [];
    try {
      tids = fs.readdirSync(`/proc/${pid}/task`).slice(0, 64);
    } catch {
      lines.push("    (exited meanwhile)");
    }
    for (const tid of tids) {
      const dir = `/proc/${pid}/task/${tid}`;
      const stat = read(`${dir}/stat`) ?? "";
      const state = stat.slice(stat.lastIndexOf(")") + 2).split(" ")[0];
      const wchan = read(`${dir}/wchan`)?.trim() || "-";
      // Running and sleeping-in-poll threads say little; a thread in D state or a named wait says where it hangs.
      if (state === "S" && (wchan === "-" || wchan === "0" || /poll|futex|ep_poll|do_wait|pipe_read|unix_stream/.test(wchan))) continue;
      lines.push(`    thread ${tid} state=${state} wchan=${wchan} syscall=${read(`${dir}/syscall`)?.trim().split(" ")[0] ?? "?"}`);
      const stack = read(`${dir}/stack`)?.trim();
      if (stack) for (const frame of stack.split("\n").slice(0, 10)) lines.push(`        ${frame}`);
    }
  }
  const fuse = (read("/proc/self/mountinfo") ?? "")
    .split("\n")
    .map((l) => l.split(" "))
    .filter((f) => f.length > 8 && f[f.indexOf("-") + 1]?.startsWith("fuse"))
    .map((f) => {
      const minor = f[2].split(":")[1];
      const waiting = read(`/sys/fs/fuse/connections/${minor}/waiting`)?.trim() ?? "?";
      return `  ${f[4]} (${f[f.indexOf("-") + 1]}, connection ${minor}, ${waiting} requests waiting)`;
    });
  return `${lines.join("\n")}\nFUSE mounts:\n${fuse.length ? fuse.join("\n") : "  none"}`;
}

async function expire() {
  expired = true;
  console.error(`\nbounded-run: ${label} is still running after its ${budgetS} s budget; what each of its processes is doing:`);
  try {
    console.error(await report());
  } catch (err) {
    console.error(`bounded-run: could not read the process table: ${err.message}`);
  }
  await signalTree("SIGTERM");
  await new Promise((r) => setTimeout(r, 5000));
  await signalTree("SIGKILL");
  await new Promise((r) => setTimeout(r, 2000));
  const left = await treePids();
  if (left.pids.length) {
    console.error(`bounded-run: still there after SIGKILL: ${left.pids.map((pid) => `${pid} ${left.table.get(pid).comm} state=${left.table.get(pid).state}`).join(", ")}`);
  }
  console.error(`bounded-run: ${label} FAILED: ran past its ${budgetS} s budget (ended it)`);
  process.exit(124);
}
