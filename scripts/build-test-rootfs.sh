#!/usr/bin/env bash
# Builds a small Debian 12 rootfs (debootstrap --variant=minbase, plus curl) once and caches it.
# Usage: scripts/build-test-rootfs.sh [CACHE_DIR]  -> prints the rootfs path.
# Needs root and Debian's archive (the only network this project uses besides npm).
set -euo pipefail
CACHE="${1:-${III_TEST_ROOTFS_CACHE:-/var/cache/iii-test}}"
SUITE=bookworm
EXTRA=curl,netcat-openbsd,attr,libcap2-bin
KEY="debian-${SUITE}-minbase-$(echo "$EXTRA" | tr ',' '-')"
OUT="$CACHE/$KEY"
if [ -f "$OUT/.complete" ]; then echo "$OUT"; exit 0; fi
mkdir -p "$CACHE"
exec 9>"$CACHE/.$KEY.lock"
flock 9
if [ -f "$OUT/.complete" ]; then echo "$OUT"; exit 0; fi
TMP="$(mktemp -d "$CACHE/.$KEY.XXXXXX")"
trap 'rm -rf "$TMP"' EXIT
MIRROR="$( { grep -h '^URIs:' /etc/apt/sources.list.d/*.sources 2>/dev/null | awk '{print $2}'; grep -hE '^deb ' /etc/apt/sources.list 2>/dev/null | awk '{print $2}'; } | grep -E '/debian/?$' | head -n1 || true)"
debootstrap --variant=minbase --include="$EXTRA" "$SUITE" "$TMP/rootfs" "${MIRROR:-http://deb.debian.org/debian}" >"$TMP/debootstrap.log" 2>&1 || {
  tail -n 20 "$TMP/debootstrap.log" >&2; exit 1; }
rm -rf "$TMP/rootfs/var/cache/apt/archives/"*.deb "$TMP/rootfs/var/lib/apt/lists/"*
touch "$TMP/rootfs/.complete"
rm -rf "$OUT"
mv "$TMP/rootfs" "$OUT"
echo "$OUT"
