// Interleaved A/B of shim builds on one workload (default: the bench's create row), with bindfs in every round.
//   node bench/ab-shim.js NAME=path/to/variant.so ...      (III_AB_ROUNDS, default 6; III_AB_FILES, default 10000)
//   III_AB_WORK: the timed script (run in the fresh directory through the mount); III_AB_SETUP: an untimed script
//   run in that directory on the host before the mount (e.g. the tree a stat workload reads).
// Each round mounts every variant (the .so copied over dist/libiii-setattr-shim.so before its mount, so only that
// mount's server loads it) and bindfs, in a rotated order, and times the workload on a fresh directory.
// Prints every round and the medians; ratios are against bindfs of the same round. The built shim is restored.
import { execFileSync } from "node:child_process";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { mountPassthrough } from "../dist/index.js";

const ROUNDS = Number(process.env.III_AB_ROUNDS ?? 6);
const FILES = Number(process.env.III_AB_FILES ?? 10_000);
const WORK =
  process.env.III_AB_WORK ?? `for d in $(seq 1 ${FILES / 100}); do mkdir d$d; for f in $(seq 1 100); do echo "$d $f" > d$d/f$f; done; done`;
const variants = process.argv.slice(2).map((a) => {
  const eq = a.indexOf("=");
  return { name: a.slice(0, eq), so: path.resolve(a.slice(eq + 1)) };
});
if (variants.length === 0) {
  console.error("usage: node bench/ab-shim.js NAME=variant.so ...");
  process.exit(2);
}
const dist = new URL("../dist/libiii-setattr-shim.so", import.meta.url).pathname;
const saved = `${dist}.ab-saved`;
fs.copyFileSync(dist, saved);
const base = fs.mkdtempSync(path.join(os.tmpdir(), "iii-fs-ab-"));
const data = path.join(base, "data");
const mnt = path.join(base, "mnt");
fs.mkdirSync(data);
fs.mkdirSync(mnt);

function install(so) {
  fs.copyFileSync(so, `${dist}.tmp`);
  fs.renameSync(`${dist}.tmp`, dist);
}

function timed(dir) {
  const out = execFileSync("bash", ["-c", `cd "${dir}" && s=$(date +%s%N) && { ${WORK} ; } >/dev/null && e=$(date +%s%N) && echo $(( (e - s) / 1000 ))`]);
  return Number(String(out).trim()) / 1e6;
}

const times = Object.fromEntries([...variants.map((v) => v.name), "bindfs"].map((n) => [n, []]));
try {
  console.log(`# ${ROUNDS} rounds, ${new Date().toISOString()}, load ${os.loadavg().map((l) => l.toFixed(2)).join(" ")}`);
  const order = [...variants.map((v) => v.name), "bindfs"];
  for (let r = 0; r < ROUNDS; r++) {
    const line = [];
    for (let k = 0; k < order.length; k++) {
      const name = order[(k + r) % order.length];
      const dir = path.join(data, `r${r}-${name}`);
      fs.mkdirSync(dir);
      if (process.env.III_AB_SETUP) execFileSync("bash", ["-c", process.env.III_AB_SETUP], { cwd: dir });
      let t;
      if (name === "bindfs") {
        execFileSync("bindfs", [data, mnt]);
        try {
          t = timed(path.join(mnt, path.basename(dir)));
        } finally {
          execFileSync("fusermount", ["-u", mnt]);
        }
      } else {
        install(variants.find((v) => v.name === name).so);
        const h = await mountPassthrough({ root: data, mountpoint: mnt, stableInodes: process.env.III_AB_STABLE === "1" });
        try {
          t = timed(path.join(mnt, path.basename(dir)));
        } finally {
          await h.unmount();
        }
      }
      fs.rmSync(dir, { recursive: true, force: true });
      times[name].push(t);
      line.push(`${name} ${t.toFixed(3)}`);
    }
    console.log(`round ${r + 1}: ${line.join("  ")}`);
  }
  const median = (v) => [...v].sort((a, b) => a - b)[Math.floor(v.length / 2)];
  for (const [name, v] of Object.entries(times)) {
    const ratios = v.map((t, i) => t / times.bindfs[i]);
    console.log(`${name.padEnd(12)} median ${median(v).toFixed(3)} s   per-round ratio to bindfs: median ${median(ratios).toFixed(2)} [${ratios.map((x) => x.toFixed(2)).join(" ")}]`);
  }
  console.log(`# load at the end ${os.loadavg().map((l) => l.toFixed(2)).join(" ")}`);
} finally {
  install(saved);
  fs.rmSync(saved);
  fs.rmSync(base, { recursive: true, force: true });
}
