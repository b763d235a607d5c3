#!/usr/bin/env bash
# Sets up the machine (scripts/bootstrap.sh) and runs every check: typecheck, then all packages' tests.
# VM tests (tagged `vm`) run in a bounded set; III_SKIP_VM=1 skips them.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
"$ROOT/scripts/bootstrap.sh"
export PATH="/usr/local/bin:$PATH"
cd "$ROOT"
REPORT_DIR="$(mktemp -d)"
trap 'rm -rf "$REPORT_DIR"' EXIT
export III_TEST_REPORT_DIR="$REPORT_DIR"
pnpm run typecheck
status=0
# Every package changed on this branch (or since its last release, on main) has a changeset.
node scripts/check-changesets.mjs || status=1
pnpm run test || status=$?
node scripts/test-summary.mjs "$REPORT_DIR" || status=1
exit $status
