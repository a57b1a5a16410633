#!/usr/bin/env bash
# Compares rhizo, the reference Python Hypha server and a bare WebSocket relay on this machine
# with the echo scenario (4 pairs, 64 calls in flight each, 128-byte payloads), rounds
# interleaved, and writes the report and chart under target/loadtest/.
#
# Usage: bash loadtest/compare.sh [extra `rhizo-loadtest compare echo` flags...]
# Environment: DURATION (per run, default 10s), ROUNDS (default 3), OUT (default target/loadtest).
#
# Everything listens on 127.0.0.1 only, every step has a time limit, and everything this
# script starts is stopped when it exits. If the reference server cannot be started (it is
# installed on first use by ../shared/peer/start-reference.sh), it is skipped with a warning.
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
cd "$ROOT"
# shellcheck source=loadtest/script-helpers.sh
. "$ROOT/loadtest/script-helpers.sh"
DURATION=${DURATION:-10s}
ROUNDS=${ROUNDS:-3}
OUT=${OUT:-$ROOT/target/loadtest}
WORK=$(mktemp -d)
PIDS=()

cleanup() {
  stop_pids
  rm -rf "$WORK"
}
trap cleanup EXIT
trap 'exit 130' INT TERM


echo "== building release binaries" >&2
timeout 1200 cargo build --release --bin rhizo
timeout 1200 cargo build --release -p rhizo-loadtest --bin rhizo-loadtest
TARGET_DIR=${CARGO_TARGET_DIR:-$ROOT/target}
LT=$TARGET_DIR/release/rhizo-loadtest

# Each run: setup + duration + drain; 3 targets per round.
secs=${DURATION%s}
[[ $secs =~ ^[0-9]+$ ]] || secs=60
BOUND=$(( ROUNDS * 3 * (secs + 30) + 120 ))

# Both servers default to 200 connections per user and 1000 clients per workspace, fewer
# than large fan-out or same-workspace connect runs open; lift them for both alike.
export HYPHA_MAX_CONNECTIONS_PER_USER=${HYPHA_MAX_CONNECTIONS_PER_USER:-1000000}
export HYPHA_MAX_CLIENTS_PER_WORKSPACE=${HYPHA_MAX_CLIENTS_PER_WORKSPACE:-1000000}

echo "== starting rhizo" >&2
RHIZO_PORT=$(free_port)
HYPHA_JWT_SECRET=compare-sh-secret RHIZO_LOG=warn \
  "$TARGET_DIR/release/rhizo" serve --host 127.0.0.1 --port "$RHIZO_PORT" --data-dir "$WORK/data" \
  >"$WORK/rhizo.log" 2>&1 &
RHIZO_PID=$!
PIDS+=("$RHIZO_PID")
if ! wait_for "curl -sf http://127.0.0.1:$RHIZO_PORT/health/readiness" 30; then
  echo "rhizo did not become ready:" >&2
  cat "$WORK/rhizo.log" >&2
  exit 1
fi

echo "== starting the relay" >&2
RELAY_PORT=$(free_port)
"$LT" relay --host 127.0.0.1 --port "$RELAY_PORT" --lifetime "$((BOUND + 60))s" >"$WORK/relay.log" 2>&1 &
RELAY_PID=$!
PIDS+=("$RELAY_PID")
if ! wait_for "grep -q 'relay listening' '$WORK/relay.log'" 10; then
  echo "the relay did not start:" >&2
  cat "$WORK/relay.log" >&2
  exit 1
fi

TARGETS=(--target "rhizo=ws://127.0.0.1:$RHIZO_PORT/ws")
PID_FLAGS=(--pid "rhizo=$RHIZO_PID" --pid "relay=$RELAY_PID")

echo "== starting the reference server (first use installs it; may take minutes)" >&2
REF_PORT=$(free_port)
if REF_PID=$(timeout 900 bash ../shared/peer/start-reference.sh "$REF_PORT" 2>"$WORK/reference.err"); then
  PIDS+=("$REF_PID")
  TARGETS+=(--target "reference=ws://127.0.0.1:$REF_PORT/ws")
  PID_FLAGS+=(--pid "reference=$REF_PID")
else
  echo "warning: the reference server could not be started; comparing without it:" >&2
  tail -5 "$WORK/reference.err" >&2 || true
fi
TARGETS+=(--target "relay=relay://127.0.0.1:$RELAY_PORT")

mkdir -p "$OUT"
echo "== compare echo (rounds: $ROUNDS, $DURATION each, at most ${BOUND}s)" >&2
rc=0
timeout "$BOUND" "$LT" compare echo "${TARGETS[@]}" "${PID_FLAGS[@]}" \
  --rounds "$ROUNDS" --duration "$DURATION" --pairs 4 --in-flight 64 --payload 128 \
  --report "$OUT/compare-echo.json" --chart "$OUT/compare-echo.svg" "$@" || rc=$?
if [ "$rc" -ne 0 ]; then
  echo "compare exited with $rc (1: some run counted errors or failed; 124: time limit)" >&2
fi
exit "$rc"
