#!/usr/bin/env bash
# The README's main job: runs examples/hello-worker in a microVM with `iii worker dev` against the local engine
# stand-in (tools/engine-standin, not the real iii engine), and shows the worker registering its function from
# inside the VM and the stand-in invoking it. Ends by itself once the invocation came back (or after a timeout).
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
export PATH="/usr/local/bin:$PATH"
cd "$ROOT"
TIMEOUT_S="${III_DEMO_TIMEOUT:-900}"
PORT="${III_DEMO_PORT:-49134}"

echo "demo: building the node dev base image (debootstrap + Node 24; cached after the first run)" >&2
LAYOUT="$(images/build.sh node)"
export III_DEV_IMAGE_NODE="oci:$LAYOUT:latest"

WORK="$(mktemp -d)"
STANDIN_LOG="$WORK/engine-standin.log"
cleanup() {
  [ -n "${DEV_PID:-}" ] && kill -INT "$DEV_PID" 2>/dev/null && wait "$DEV_PID" 2>/dev/null || true
  [ -n "${STANDIN_PID:-}" ] && kill "$STANDIN_PID" 2>/dev/null || true
  [ -n "${TAIL_PID:-}" ] && kill "$TAIL_PID" 2>/dev/null || true
  rm -rf "$WORK"
}
trap cleanup EXIT INT TERM

node tools/engine-standin/dist/cli.js --port "$PORT" --invoke hello::greet --payload '{"name":"from the demo"}' >"$STANDIN_LOG" 2>&1 &
STANDIN_PID=$!
until grep -q "listening on" "$STANDIN_LOG" 2>/dev/null; do
  if ! kill -0 "$STANDIN_PID" 2>/dev/null; then
    echo "demo: the engine stand-in did not start: $(cat "$STANDIN_LOG")" >&2
    echo "demo: (another process may hold port $PORT; set III_DEMO_PORT)" >&2
    exit 1
  fi
  sleep 0.2
done
tail -n +1 -f "$STANDIN_LOG" | stdbuf -oL sed 's/^/engine-standin | /' &
TAIL_PID=$!

echo "demo: ./iii worker dev examples/hello-worker  (the worker runs inside a VM; Ctrl-C stops it)" >&2
./iii worker dev examples/hello-worker --engine-url "ws://localhost:$PORT" &
DEV_PID=$!

deadline=$(( $(date +%s) + TIMEOUT_S ))
until grep -q "invoked hello::greet →" "$STANDIN_LOG"; do
  if ! kill -0 "$DEV_PID" 2>/dev/null; then echo "demo: iii worker dev ended early" >&2; exit 1; fi
  if [ "$(date +%s)" -gt "$deadline" ]; then echo "demo: no invocation within ${TIMEOUT_S}s" >&2; exit 1; fi
  sleep 1
done
echo "demo: the engine stand-in invoked hello::greet in the VM: $(grep -m1 'invoked hello::greet' "$STANDIN_LOG")" >&2
kill -INT "$DEV_PID"; wait "$DEV_PID" || true; DEV_PID=""
echo "demo: done" >&2
