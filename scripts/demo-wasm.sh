#!/usr/bin/env bash
# The WASM tier's demo: builds the example component (examples/wasm-worker, JavaScript componentized by jco) and
# the preview 1 example (examples/wasm-p1), runs the component as a worker that joins the local engine stand-in
# (tools/engine-standin, not the real iii engine), which invokes wasm::greet and wasm::functions in it, and runs
# the preview 1 module to completion. Ends by itself; everything it creates lives in a temporary directory.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
export PATH="/usr/local/bin:$PATH"
PORT="${III_DEMO_PORT:-49134}"
TIMEOUT_S="${III_DEMO_TIMEOUT:-120}"

WORK="$(mktemp -d)"
export III_HOME="$WORK/home"
STANDIN_LOG="$WORK/engine-standin.log"
iii() { (cd "$WORK" && "$ROOT/iii" "$@"); }
cleanup() {
  iii worker stop greet >/dev/null 2>&1 || true
  [ -n "${STANDIN_PID:-}" ] && kill "$STANDIN_PID" 2>/dev/null || true
  rm -rf "$WORK"
}
trap cleanup EXIT INT TERM

echo "demo: building examples/wasm-worker (jco componentize, ~15 s) and examples/wasm-p1 (wabt)" >&2
node "$ROOT/examples/wasm-worker/build.mjs" "$WORK/greet.wasm" >/dev/null
node "$ROOT/examples/wasm-p1/build.mjs" "$WORK/hello.wasm" >/dev/null

node "$ROOT/tools/engine-standin/dist/cli.js" --port "$PORT" --invoke wasm::greet --payload '{"name":"from the demo"}' >"$STANDIN_LOG" 2>&1 &
STANDIN_PID=$!
until grep -q "listening on" "$STANDIN_LOG" 2>/dev/null; do
  kill -0 "$STANDIN_PID" 2>/dev/null || { echo "demo: the engine stand-in did not start: $(cat "$STANDIN_LOG") (set III_DEMO_PORT?)" >&2; exit 1; }
  sleep 0.2
done

echo "demo: ./iii worker add ./greet.wasm && ./iii worker start greet" >&2
iii worker add ./greet.wasm
iii worker start greet --engine-url "ws://127.0.0.1:$PORT"
deadline=$(( $(date +%s) + TIMEOUT_S ))
until grep -q "invoked wasm::greet →" "$STANDIN_LOG"; do
  [ "$(date +%s)" -gt "$deadline" ] && { echo "demo: no invocation within ${TIMEOUT_S}s" >&2; cat "$STANDIN_LOG" >&2; exit 1; }
  sleep 0.5
done
sed 's/^/engine-standin | /' "$STANDIN_LOG"
iii worker list
iii worker stop greet

echo "demo: ./iii worker add ./hello.wasm -- one two && ./iii worker start hello  (a preview 1 module, runs to completion)" >&2
iii worker add ./hello.wasm -- one two
iii worker start hello
for _ in $(seq 1 100); do iii worker list | grep -q "hello.*completed" && break; sleep 0.1; done
iii worker logs hello
iii worker list
echo "demo: done" >&2
