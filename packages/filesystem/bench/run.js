// Benchmarks: our FUSE view vs bindfs (C, libfuse) vs the raw directory, same data.
// Prints `metric  ours  bindfs  raw  ours/bindfs`. Every workload runs in a child
// shell that cd's itself (the serving process must never block on its own mount).
import { execFile } from "node:child_process";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { mountPassthrough } from "../dist/index.js";

const SEQ_MIB = Number(process.env.III_BENCH_SEQ_MIB ?? 1024);
const FILES = Number(process.env.III_BENCH_FILES ?? 10_000);
const GIT_FILES = Number(process.env.III_BENCH_GIT_FILES ?? 5_000);
/** III_BENCH_STABLE=1: every row of ours with `stableInodes` (what a default of stable numbers would give). */
const STABLE = process.env.III_BENCH_STABLE === "1";
/** III_BENCH_ONLY=seq,meta,git: only those groups of rows (reads and writes; create/stat/find/tar x; git), default all. */
const ONLY = new Set((process.env.III_BENCH_ONLY ?? "seq,meta,git").split(","));

const base = fs.mkdtempSync(path.join(os.tmpdir(), `iii-fs-bench-${process.pid}-`));
const data = path.join(base, "data");
fs.mkdirSync(data);

function sh(script, timeoutMs = 600_000) {
  return new Promise((resolve, reject) => {
    execFile("bash", ["-c", script], { cwd: "/", timeout: timeoutMs, maxBuffer: 1 << 26 }, (err, stdout, stderr) => {
      if (err) reject(new Error(`${script}\n${stderr}`));
      else resolve(stdout);
    });
  });
}

/** Seconds taken by `script` run inside `dir`. */
async function timed(dir, script) {
  const out = await sh(`cd "${dir}" && s=$(date +%s%N) && { ${script} ; } >/dev/null && e=$(date +%s%N) && echo $(( (e - s) / 1000 ))`);
  return Number(out.trim()) / 1e6;
}

/** The mount of ours being measured (for its request counters). */
let oursHandle;

/** FUSE requests our server has answered so far (all operations), plus those the shim answered itself. */
async function requestsSoFar() {
  // Every target waits alike (the kernel's 1 s attribute cache ages the same between a cold and a warm run).
  await new Promise((r) => setTimeout(r, 300)); // stats are a snapshot at most 250 ms old
  if (!oursHandle) return 0;
  return Object.values(oursHandle.stats().ops).reduce((a, b) => a + b, 0);
}

/** Requests per item of `fn` on ours (0 on the others), with its result. */
async function counted(items, fn) {
  const before = await requestsSoFar();
  const value = await fn();
  const after = await requestsSoFar();
  return { value, perItem: oursHandle ? (after - before) / items : undefined };
}

const targets = {
  async ours() {
    const mnt = path.join(base, "m-ours");
    fs.mkdirSync(mnt, { recursive: true });
    const h = await mountPassthrough({ root: data, mountpoint: mnt, stableInodes: STABLE });
    oursHandle = h;
    return {
      dir: mnt,
      close: () => {
        oursHandle = undefined;
        return h.unmount();
      },
    };
  },
  async bindfs() {
    const mnt = path.join(base, "m-bindfs");
    fs.mkdirSync(mnt, { recursive: true });
    await sh(`bindfs "${data}" "${mnt}"`);
    return { dir: mnt, close: () => sh(`fusermount -u "${mnt}"`) };
  },
  async raw() {
    return { dir: data, close: async () => undefined };
  },
};

/** Interleaved runs of each metadata row (ours, bindfs, raw, ours, ...): the row shows the medians. */
const RUNS = Number(process.env.III_BENCH_RUNS ?? 3);

function median(values) {
  const v = [...values].sort((a, b) => a - b);
  return v[Math.floor(v.length / 2)];
}

/** `each` RUNS times (fn gets the run index); per target the median of each number fn returned (a number or an object of numbers). */
async function eachMedian(fn) {
  const runs = [];
  for (let i = 0; i < RUNS; i++) runs.push(await each((dir, name) => fn(dir, name, i)));
  const out = {};
  for (const name of Object.keys(runs[0])) {
    const first = runs[0][name];
    if (typeof first === "number") out[name] = median(runs.map((r) => r[name]));
    else {
      out[name] = {};
      for (const k of Object.keys(first)) out[name][k] = median(runs.map((r) => r[name][k]).filter((x) => x !== undefined));
    }
  }
  return out;
}

/** Runs fn(dir) against a fresh mount of each target. */
async function each(fn) {
  const out = {};
  for (const [name, open] of Object.entries(targets)) {
    const t = await open();
    try {
      out[name] = await fn(t.dir, name);
    } finally {
      await t.close();
    }
  }
  return out;
}

const rows = [];
const pick = (r, k) => ({ ours: r.ours[k], bindfs: r.bindfs[k], raw: r.raw[k] });
/** `reqs`: FUSE requests per item (file) our server answered for this row, when counted. */
function row(metric, unit, higherIsBetter, r, reqs, per = "file") {
  rows.push({ metric: `${metric} (${unit})`, ...r, higherIsBetter });
  const fmt = (v) => (v >= 100 ? v.toFixed(0) : v >= 10 ? v.toFixed(1) : v.toFixed(3));
  const perOp = reqs === undefined ? "" : `${reqs.toFixed(1).padStart(10)}${per === "file" ? "" : `/${per}`}`;
  console.log(`${`${metric} (${unit})`.padEnd(34)} ${fmt(r.ours).padStart(9)} ${fmt(r.bindfs).padStart(9)} ${fmt(r.raw).padStart(9)} ${(r.ours / r.bindfs).toFixed(2).padStart(11)}${perOp}`);
}

try {
  console.log(`# metadata rows: medians of ${RUNS} interleaved runs (ours, bindfs, raw, ours, ...)${STABLE ? "; ours with stableInodes" : ""}`);
  console.log(`# @iii/filesystem bench — ${new Date().toISOString()} — ${os.cpus().length} cpus, node ${process.version}, load average ${os.loadavg().map((l) => l.toFixed(2)).join(" ")}`);
  console.log(`${"metric".padEnd(34)} ${"ours".padStart(9)} ${"bindfs".padStart(9)} ${"raw".padStart(9)} ${"ours/bindfs".padStart(11)} ${"req/file".padStart(9)}`);

  if (ONLY.has("seq")) {
    // Sequential write, then read back through a fresh mount (the host page cache holds
    // the file for all three, so this measures the filesystem path, not the disk).
    const write = await each(async (dir, name) => {
      const s = await timed(dir, `dd if=/dev/zero of=seq-${name} bs=1M count=${SEQ_MIB} status=none`);
      return SEQ_MIB / s;
    });
    row(`seq write ${SEQ_MIB} MiB`, "MiB/s", true, write);
    await sh(`cd "${data}" && rm -f seq-bindfs seq-raw && mv seq-ours seq`);
    // Medians of RUNS interleaved fresh mounts: one target's read speed moves by ±30% between runs on this host.
    const reads = await eachMedian(async (dir) => {
      const first = await counted(SEQ_MIB, () => timed(dir, `dd if=seq of=/dev/null bs=1M status=none`));
      // Again through the same mount: the kernel's page cache of the mount (kernel_cache) answers it.
      const again = await counted(SEQ_MIB, () => timed(dir, `dd if=seq of=/dev/null bs=1M status=none`));
      return { first: SEQ_MIB / first.value, again: SEQ_MIB / again.value, firstReqs: first.perItem, againReqs: again.perItem };
    });
    const read = pick(reads, "first");
    const cachedRead = pick(reads, "again");
    const readReqs = { first: reads.ours.firstReqs, again: reads.ours.againReqs };
    row(`seq read ${SEQ_MIB} MiB`, "MiB/s", true, read, readReqs.first, "MiB");
    row(`cached read ${SEQ_MIB} MiB`, "MiB/s", true, cachedRead, readReqs.again, "MiB");

    // Random 4 KiB reads, O_DIRECT so every read reaches the filesystem.
    const fio = await each(async (dir) => {
      const out = await sh(
        `cd "${dir}" && fio --name=rr --filename=seq --rw=randread --bs=4k --size=${Math.min(SEQ_MIB, 512)}M --direct=1 --ioengine=psync --runtime=5 --time_based --output-format=json`,
      );
      return JSON.parse(out.slice(out.indexOf("{"))).jobs[0].read.iops;
    });
    row("fio randread 4k O_DIRECT", "IOPS", true, fio);
    await sh(`rm -f "${data}/seq"`);

    // The VM's first read: /init.krun (a virtual file backed by a host file) through a
    // fresh mount; bindfs and raw read the same host file.
    const INIT_MIB = 110;
    await sh(`head -c ${INIT_MIB}M /dev/urandom > "${base}/init-src" && mkdir -p "${data}/init" && cp "${base}/init-src" "${data}/init/init.krun"`);
    const initRead = {};
    {
      const mnt = path.join(base, "m-init");
      fs.mkdirSync(mnt, { recursive: true });
      const h = await mountPassthrough({ root: data, mountpoint: mnt, virtualFiles: { "/init.krun": { hostPath: `${base}/init-src` } } });
      try {
        initRead.ours = INIT_MIB / (await timed(mnt, "cat init.krun > /dev/null"));
      } finally {
        await h.unmount();
      }
      for (const name of ["bindfs", "raw"]) {
        const t = await targets[name]();
        try {
          initRead[name] = INIT_MIB / (await timed(t.dir, "cat init/init.krun > /dev/null"));
        } finally {
          await t.close();
        }
      }
    }
    row(`/init.krun ${INIT_MIB} MiB read, fresh mount`, "MiB/s", true, initRead);
    await sh(`rm -rf "${data}/init"`);

  }

  if (ONLY.has("meta")) {
    // find + stat over a tree of small files: cold (fresh mount) then warm (again).
    // Create small files (the tree the next rows use): per file a negative lookup, create, write, flush, release.
    const create = await eachMedian(async (dir, name, i) => {
      const t = await counted(FILES, () =>
        timed(dir, `mkdir tree-${name}-${i} && cd tree-${name}-${i} && for d in $(seq 1 ${FILES / 100}); do mkdir d$d; for f in $(seq 1 100); do echo "$d $f" > d$d/f$f; done; done`),
      );
      return { s: t.value, reqs: t.perItem };
    });
    row(`create ${FILES} small files`, "s", false, { ours: create.ours.s, bindfs: create.bindfs.s, raw: create.raw.s }, create.ours.reqs);
    await sh(`cd "${data}" && mv tree-ours-0 tree && rm -rf tree-*`);

    // stat(2) of every file by name on a fresh mount (the shell's glob lists the directories first).
    const statRow = await eachMedian(async (dir) => {
      const t = await counted(FILES, () => timed(dir, `printf '%s\\0' tree/d*/f* | xargs -0 stat -c '%s %i %Y'`));
      return { s: t.value, reqs: t.perItem };
    });
    row(`stat ${FILES} files, cold`, "s", false, { ours: statRow.ours.s, bindfs: statRow.bindfs.s, raw: statRow.raw.s }, statRow.ours.reqs);
    const find = await eachMedian(async (dir) => {
      const c = await counted(FILES, () => timed(dir, `find tree -printf '%s %m %u\\n'`));
      const w = await counted(FILES, () => timed(dir, `find tree -printf '%s %m %u\\n'`));
      return { cold: c.value, warm: w.value, coldReqs: c.perItem, warmReqs: w.perItem };
    });
    row(`find+stat ${FILES} files, cold`, "s", false, pick(find, "cold"), find.ours.coldReqs);
    row(`find+stat ${FILES} files, warm`, "s", false, pick(find, "warm"), find.ours.warmReqs);

    // tar x of small files.
    await sh(`cd "${data}" && tar cf "${base}/small.tar" tree && rm -rf tree`);
    const tarx = await eachMedian(async (dir, name) => {
      const t = await counted(FILES, () => timed(dir, `mkdir x-${name} && tar xf "${base}/small.tar" -C x-${name}`));
      await sh(`rm -rf "${data}/x-${name}"`);
      return { s: t.value, reqs: t.perItem };
    });
    row(`tar x ${FILES} small files`, "s", false, pick(tarx, "s"), tarx.ours.reqs);

  }

  if (ONLY.has("git")) {
    // git status on a repository of GIT_FILES files.
    await sh(
      `mkdir -p "${data}/repo" && cd "${data}/repo" && git init -q && for d in $(seq 1 ${GIT_FILES / 100}); do mkdir d$d; for f in $(seq 1 100); do echo "$d $f" > d$d/f$f; done; done && git add . && git -c user.email=b@b -c user.name=b commit -qm init`,
    );
    await sh(`git clone -q --bare "${data}/repo" "${base}/src.git"`);
    const clone = await eachMedian(async (dir, name) => {
      const t = await counted(GIT_FILES, () => timed(dir, `git clone -q --no-hardlinks "${base}/src.git" clone-${name}`));
      await sh(`rm -rf "${data}/clone-${name}"`);
      return { s: t.value, reqs: t.perItem };
    });
    row(`git clone ${GIT_FILES} files`, "s", false, pick(clone, "s"), clone.ours.reqs);

    const git = await eachMedian(async (dir) => {
      const c = await counted(GIT_FILES, () => timed(dir, `cd repo && git status --porcelain`));
      const w = await counted(GIT_FILES, () => timed(dir, `cd repo && git status --porcelain`));
      return { cold: c.value, warm: w.value, coldReqs: c.perItem, warmReqs: w.perItem };
    });
    const gitCold = pick(git, "cold");
    row(`git status ${GIT_FILES} files, cold`, "s", false, gitCold, git.ours.coldReqs);
    row(`git status ${GIT_FILES} files, warm`, "s", false, pick(git, "warm"), git.ours.warmReqs);

    // The same cold run with `stableInodes` (st_ino from the host file, as bindfs's use_ino gives): git finds its
    // index up to date instead of re-reading every file. Not the default (see README); bindfs and raw as above.
    {
      const mnt = path.join(base, "m-stable");
      fs.mkdirSync(mnt, { recursive: true });
      const times = [];
      let reqs;
      for (let i = 0; i < RUNS; i++) {
        const h = await mountPassthrough({ root: data, mountpoint: mnt, stableInodes: true });
        oursHandle = h;
        try {
          const c = await counted(GIT_FILES, () => timed(mnt, `cd repo && git status --porcelain`));
          times.push(c.value);
          reqs = c.perItem;
        } finally {
          oursHandle = undefined;
          await h.unmount();
        }
      }
      row(`git status ${GIT_FILES} files, cold, stableInodes`, "s", false, { ours: median(times), bindfs: gitCold.bindfs, raw: gitCold.raw }, reqs);
    }
  }
  console.log("# ours/bindfs: above 1 is better for MiB/s and IOPS, below 1 is better for seconds; req/file: FUSE requests our server answered per file (per MiB for reads; the shim's reads and writes included, its security.capability answers not)");
  console.log(`# load average at the end ${os.loadavg().map((l) => l.toFixed(2)).join(" ")}`);
} finally {
  fs.rmSync(base, { recursive: true, force: true });
}
