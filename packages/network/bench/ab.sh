#!/bin/bash
# Interleaved A/B of two builds (run under the heavy-work lock):
#   bench/ab.sh ROOT_A ROOT_B ROUNDS SECONDS "MODE MTU" ["MODE MTU" ...]
# ROOT_A/ROOT_B: package directories holding dist/, bench/ and test/tap-bridge.mjs (e.g. copies of this
# package at two commits). Each round runs bench/profile.mjs once per build, the order alternating
# between rounds; prints the load's number (Mbit/s for bulk, median microseconds for rtt, queries/s for
# dns) and the stack process's CPU per unit of work for every run (per round trip for rtt, with the p99),
# the medians, and in how many rounds B beat A.
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
// The row value, whether higher is better, and CPU per unit: Gbit per CPU-s (bulk), CPU-us per query (dns), none for rtt.
const val = (x) => x.r.mbps ?? x.r.qps ?? x.r.medianUs;
const higher = (x) => x.r.medianUs === undefined;
const eff = (x) =>
  x.r.mbps !== undefined ? (x.r.mbps * secs) / 1000 / x.r.cpuSeconds
  : x.r.qps !== undefined ? (x.r.cpuSeconds * 1e6) / x.r.answered
  : x.r.roundTrips ? (x.r.cpuSeconds * 1e6) / x.r.roundTrips : NaN;
const groups = new Map();
for (const x of rows) {
  const k = `${x.r.mode} ${x.r.mtu}`;
  if (!groups.has(k)) groups.set(k, { A: [], B: [], loads: [] });
  groups.get(k)[x.v].push(x);
  groups.get(k).loads.push(x.load);
}
for (const [k, g] of groups) {
  const unit = g.A[0].r.mbps !== undefined ? "Mbit/s" : g.A[0].r.qps !== undefined ? "q/s" : "us";
  const effUnit = g.A[0].r.mbps !== undefined ? "Gbit/CPU-s" : g.A[0].r.qps !== undefined ? "CPU-us/query" : "CPU-us/round trip";
  console.log(`${k}: ${unit} A ${g.A.map((x) => Math.round(val(x))).join(",")}  B ${g.B.map((x) => Math.round(val(x))).join(",")}`);
  if (g.A[0].r.medianUs !== undefined) console.log(`  p99 us A ${g.A.map((x) => Math.round(x.r.p99Us)).join(",")}  B ${g.B.map((x) => Math.round(x.r.p99Us)).join(",")}`);
  if (g.A[0].r.medianUs === undefined || g.A[0].r.roundTrips) console.log(`  ${effUnit} A ${g.A.map((x) => eff(x).toFixed(2)).join(",")}  B ${g.B.map((x) => eff(x).toFixed(2)).join(",")}`);
  const better = (b, a) => (higher(b) ? val(b) > val(a) : val(b) < val(a));
  const wins = g.B.filter((x, i) => g.A[i] && better(x, g.A[i])).length;
  const mm = (xs) => `${Math.round(Math.min(...xs))}/${Math.round(med(xs))}/${Math.round(Math.max(...xs))}`;
  console.log(`  min/median/max ${unit}: A ${mm(g.A.map(val))}, B ${mm(g.B.map(val))}; B better in ${wins}/${g.B.length} rounds; load ${Math.min(...g.loads)}-${Math.max(...g.loads)}`);
}' "$out" "$secs"
rm -f "$out"
