#!/bin/sh
# Profiles each load once (run under the heavy-work lock): bench/profile-all.sh OUTDIR [DIST_ROOT]
# DIST_ROOT: a package directory whose dist/ and bench/ to use (default: this package).
set -e
out=$1
root=${2:-$(dirname "$0")/..}
mkdir -p "$out"
for m in "reverse 1500" "forward 1500" "reverse 65520" "forward 65520" "rtt 1500" "dns 1500"; do
  set -- $m
  node --cpu-prof --cpu-prof-dir="$out/$1-$2" "$root/bench/profile.mjs" "$1" "$2" 3
done
