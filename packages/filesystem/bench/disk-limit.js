// What the writable layer's disk limit costs: the same workloads through a layered mount without a limit
// (baseline) and with one far above what they write (every write, creation and copy-up charged, no refusal),
// interleaved, on a fresh upper each time.
//   node bench/disk-limit.js      (III_BENCH_RUNS rounds, default 5; III_BENCH_SEQ_MIB, default 256; III_BENCH_FILES, default 3000)
import { execFileSync } from "node:child_process";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { mountPassthrough } from "../dist/index.js";

const ROUNDS = Number(process.env.III_BENCH_RUNS ?? 5);
const SEQ_MIB = Number(process.env.III_BENCH_SEQ_MIB ?? 256);
const FILES = Number(process.env.III_BENCH_FILES ?? 3000);
const LIMIT = 64 * 1024 ** 3;
const WORKLOADS = {
  [`write ${SEQ_MIB} MiB`]: `dd if=/dev/zero of=big bs=128k count=${SEQ_MIB * 8} status=none`,
  [`append 8 KiB x 4000`]: `head -c 8192 /dev/zero > chunk; for i in $(seq 1 4000); do cat chunk; done >> log`,
  [`create ${FILES} files`]: `for d in $(seq 1 ${FILES / 100}); do mkdir d$d; for f in $(seq 1 100); do echo "$d $f" > d$d/f$f; done; done`,
};

const base = fs.mkdtempSync(path.join(os.tmpdir(), "iii-fs-bench-limit-"));
const lower = path.join(base, "lower");
fs.mkdirSync(lower);
fs.writeFileSync(path.join(lower, "image-file"), Buffer.alloc(1 << 20));

async function once(script, limited) {
  const upper = fs.mkdtempSync(path.join(base, "upper-"));
  const mnt = fs.mkdtempSync(path.join(base, "mnt-"));
  const handle = await mountPassthrough({ layers: { lower, upper }, mountpoint: mnt, isolation: "process", ...(limited ? { upperLimitBytes: LIMIT } : {}) });
  try {
    const t0 = performance.now();
    execFileSync("bash", ["-c", `cd "$1" && ${script}`, "bash", mnt], { stdio: "ignore" });
    return performance.now() - t0;
  } finally {
    await handle.unmount();
    fs.rmSync(upper, { recursive: true, force: true });
    fs.rmSync(mnt, { recursive: true, force: true });
  }
}

const median = (xs) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];
const fmt = (xs) => `${Math.min(...xs).toFixed(0)}/${median(xs).toFixed(0)}/${Math.max(...xs).toFixed(0)}`;
console.log(`disk limit: ${ROUNDS} interleaved rounds, load ${fs.readFileSync("/proc/loadavg", "utf8").split(" ").slice(0, 3).join(" ")}`);
console.log("workload                      no limit ms (min/med/max)   limit ms (min/med/max)   ratio of medians   per-round ratio min/med/max");
try {
  for (const [name, script] of Object.entries(WORKLOADS)) {
    const off = [];
    const on = [];
    for (let r = 0; r < ROUNDS; r++) {
      // Alternate which goes first.
      if (r % 2 === 0) {
        off.push(await once(script, false));
        on.push(await once(script, true));
      } else {
        on.push(await once(script, true));
        off.push(await once(script, false));
      }
    }
    const ratios = on.map((x, i) => x / off[i]);
    console.log(
      `${name.padEnd(30)}${fmt(off).padEnd(28)}${fmt(on).padEnd(25)}${(median(on) / median(off)).toFixed(3).padEnd(19)}${Math.min(...ratios).toFixed(3)}/${median(ratios).toFixed(3)}/${Math.max(...ratios).toFixed(3)}`,
    );
  }
} finally {
  fs.rmSync(base, { recursive: true, force: true });
}
