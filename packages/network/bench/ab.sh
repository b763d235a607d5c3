#!/bin/bash
# Interleaved A/B of two builds (run under the heavy-work lock):
#   bench/ab.sh ROOT_A ROOT_B ROUNDS SECONDS "MODE MTU" ["MODE MTU" ...]
# ROOT_A/ROOT_B: package directories holding dist/, bench/ and test/tap-bridge.mjs (e.g. copies of this
# package at two commits). Each round runs bench/profile.mjs once per build, the order alternating
# between rounds; prints Mbit/s and Gbit per CPU-second of the stack's process for every run, the
# medians, and in how many rounds B beat A.
set -e
a=$1; b=$2; rounds=$3; secs=$4; shift 4
out=$(mktemp)
for m in "$@"; do
  for r in $(seq 1 "$rounds"); do
    if [ $((r % 2)) -eq 1 ]; then order="A B"; else order="B A"; fi
    for v in $order; do
      if [ "$v" = A ]; then root=$a; else root=$b; fi
      res=$(node "$root/bench/profile.mjs" $m "$secs" 2>/dev/null | tail -1)
      echo "{\"v\":\"$v\",\"load\":$(cut -d' ' -f1 /proc/loadavg),\"r\":$res}" >> "$out"
    done
  done
done
node -e '
const rows = require("fs").readFileSync(process.argv[1], "utf8").trim().split("\n").map((l) => JSON.parse(l));
const secs = Number(process.argv[2]);
const med = (a) => [...a].sort((x, y) => x - y)[Math.floor((a.length - 1) / 2)];
const eff = (x) => (x.r.mbps * secs) / 1000 / x.r.cpuSeconds;
const groups = new Map();
for (const x of rows) {
  const k = `${x.r.mode} ${x.r.mtu}`;
  if (!groups.has(k)) groups.set(k, { A: [], B: [], loads: [] });
  groups.get(k)[x.v].push(x);
  groups.get(k).loads.push(x.load);
}
for (const [k, g] of groups) {
  console.log(`${k}: Mbit/s A ${g.A.map((x) => x.r.mbps).join(",")}  B ${g.B.map((x) => x.r.mbps).join(",")}`);
  console.log(`  Gbit/CPU-s A ${g.A.map((x) => eff(x).toFixed(2)).join(",")}  B ${g.B.map((x) => eff(x).toFixed(2)).join(",")}`);
  const wins = g.B.filter((x, i) => g.A[i] && eff(x) > eff(g.A[i])).length;
  console.log(`  medians: Mbit/s ${med(g.A.map((x) => x.r.mbps))} -> ${med(g.B.map((x) => x.r.mbps))}, Gbit/CPU-s ${med(g.A.map(eff)).toFixed(2)} -> ${med(g.B.map(eff)).toFixed(2)}; B ahead per CPU-s in ${wins}/${g.B.length} rounds; load ${Math.min(...g.loads)}-${Math.max(...g.loads)}`);
}' "$out" "$secs"
rm -f "$out"
