#!/usr/bin/env bash
# Compares echo on one rhizo node with echo across rhizo nodes that share Redis (callers on
# other nodes than their providers, every frame crossing Redis pub/sub), rounds interleaved,
# with the same pairs / in-flight / payload as compare.sh (4 x 64 x 128 B). If the reference
# Python Hypha server can be started, it is measured the same way as the anchor: one plain
# instance, and NODES instances sharing Redis (--redis-uri, each its own --server-id).
#
# Usage: bash loadtest/compare-cluster.sh [extra `rhizo-loadtest compare echo` flags...]
# Environment: DURATION (per run, default 10s), ROUNDS (default 3), NODES (cluster size, 2 or
#   3, default 3: providers on node 1, callers spread over the others), OUT (default
#   $CARGO_TARGET_DIR/loadtest, else target/loadtest), REDIS (default redis://127.0.0.1:6379),
#   NO_REFERENCE=1 to skip the reference.
#
# rhizo's nodes use database 0 under a key prefix of their own (removed on exit); the
# reference has no key prefix, so its instances get the first empty database from 15 down,
# flushed on exit. Everything listens on 127.0.0.1 only, every step has a time limit, and
# everything this script starts is stopped when it exits.
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
cd "$ROOT"
# shellcheck source=loadtest/script-helpers.sh
. "$ROOT/loadtest/script-helpers.sh"
DURATION=${DURATION:-10s}
ROUNDS=${ROUNDS:-3}
NODES=${NODES:-3}
REDIS=${REDIS:-redis://127.0.0.1:6379}
TARGET_DIR=${CARGO_TARGET_DIR:-$ROOT/target}
OUT=${OUT:-$TARGET_DIR/loadtest}
WORK=$(mktemp -d)
PREFIX="lt-cluster-$$-$(date +%s)"
REF_DB=
PIDS=()

[[ $NODES =~ ^[23]$ ]] || { echo "NODES must be 2 or 3" >&2; exit 64; }
case $REDIS in
  redis://127.0.0.1:*|redis://localhost:*) ;;
  *) echo "REDIS must be on 127.0.0.1" >&2; exit 64 ;;
esac
REDIS_PORT=${REDIS##*:}
rcli() { timeout 10 redis-cli -h 127.0.0.1 -p "$REDIS_PORT" "$@"; }

cleanup() {
  stop_pids
  # rhizo's keys under our prefix; the reference's database if we took one.
  rcli -n 0 --scan --pattern "$PREFIX*" 2>/dev/null | while read -r k; do
    rcli -n 0 del "$k" >/dev/null 2>&1 || true
  done
  if [ -n "$REF_DB" ]; then rcli -n "$REF_DB" flushdb >/dev/null 2>&1 || true; fi
  rm -rf "$WORK"
}
trap cleanup EXIT
trap 'exit 130' INT TERM


# CPU seconds (user + system) a process has used so far.
cpu_s() {
  awk -v hz="$(getconf CLK_TCK)" '{printf "%.2f", ($14 + $15) / hz}' "/proc/$1/stat" 2>/dev/null || echo 0
}

rcli ping >/dev/null || { echo "Redis does not answer at $REDIS" >&2; exit 1; }

echo "== building release binaries" >&2
timeout 1200 cargo build --release --bin rhizo
timeout 1200 cargo build --release -p rhizo-loadtest --bin rhizo-loadtest
RHIZO=$TARGET_DIR/release/rhizo
LT=$TARGET_DIR/release/rhizo-loadtest

# Both servers default to 200 connections per user and 1000 clients per workspace; lift them
# for both alike, as compare.sh does.
export HYPHA_MAX_CONNECTIONS_PER_USER=${HYPHA_MAX_CONNECTIONS_PER_USER:-1000000}
export HYPHA_MAX_CLIENTS_PER_WORKSPACE=${HYPHA_MAX_CLIENTS_PER_WORKSPACE:-1000000}
export HYPHA_JWT_SECRET=compare-cluster-sh-secret

# start_rhizo NAME [flags...]: starts one rhizo on a free port; sets PORT and PID.
start_rhizo() {
  local name=$1; shift
  PORT=$(free_port)
  RHIZO_LOG=warn "$RHIZO" serve --host 127.0.0.1 --port "$PORT" --data-dir "$WORK/$name" "$@" \
    >"$WORK/$name.log" 2>&1 &
  PID=$!
  PIDS+=("$PID")
  if ! wait_for "curl -sf http://127.0.0.1:$PORT/health/readiness" 30; then
    echo "rhizo $name did not become ready:" >&2
    cat "$WORK/$name.log" >&2
    exit 1
  fi
}

echo "== starting rhizo: one single node, $NODES nodes sharing Redis (prefix $PREFIX)" >&2
start_rhizo single
SINGLE_URL="ws://127.0.0.1:$PORT/ws"
SERVER_PIDS=("single=$PID")
CROSS_URLS=()
for n in $(seq 1 "$NODES"); do
  start_rhizo "node$n" --server-id "n$n" --redis-uri "$REDIS/0" --redis-prefix "$PREFIX"
  CROSS_URLS+=("ws://127.0.0.1:$PORT/ws")
  SERVER_PIDS+=("node$n=$PID")
done
TARGETS=(--target "single=$SINGLE_URL" --target "cross=$(IFS=,; echo "${CROSS_URLS[*]}")")
PID_FLAGS=(--pid "single=${SERVER_PIDS[0]#single=}")

if [ -z "${NO_REFERENCE:-}" ]; then
  # The reference keeps its keys without a prefix: give it an empty database of its own.
  for db in $(seq 15 -1 1); do
    if [ "$(rcli -n "$db" dbsize)" = "0" ]; then REF_DB=$db; break; fi
  done
  echo "== starting the reference: one plain instance, $NODES on $REDIS/$REF_DB (first use installs it; may take minutes)" >&2
  ref_ok=1
  REF_URLS=()
  if [ -z "$REF_DB" ]; then
    echo "warning: no empty Redis database for the reference; skipping it" >&2
    ref_ok=
  fi
  if [ -n "$ref_ok" ]; then
    REF_PORT=$(free_port)
    if REF_PID=$(timeout 900 bash ../shared/peer/start-reference.sh "$REF_PORT" 2>"$WORK/reference.err"); then
      PIDS+=("$REF_PID")
      SERVER_PIDS+=("reference=$REF_PID")
    else
      ref_ok=
    fi
  fi
  if [ -n "$ref_ok" ]; then
    for n in $(seq 1 "$NODES"); do
      p=$(free_port)
      if pid=$(timeout 300 bash ../shared/peer/start-reference.sh "$p" \
          --redis-uri "$REDIS/$REF_DB" --server-id "ref-n$n" \
          --public-base-url "http://127.0.0.1:$p" 2>>"$WORK/reference.err"); then
        PIDS+=("$pid")
        SERVER_PIDS+=("ref-node$n=$pid")
        REF_URLS+=("ws://127.0.0.1:$p/ws")
      else
        ref_ok=
        break
      fi
    done
  fi
  if [ -n "$ref_ok" ]; then
    TARGETS+=(--target "reference=ws://127.0.0.1:$REF_PORT/ws")
    TARGETS+=(--target "reference-cross=$(IFS=,; echo "${REF_URLS[*]}")")
    PID_FLAGS+=(--pid "reference=$REF_PID")
  else
    echo "warning: the reference could not be started (plain and with --redis-uri); comparing rhizo only:" >&2
    tail -5 "$WORK/reference.err" >&2 || true
  fi
fi

NT=$(( ${#TARGETS[@]} / 2 ))
secs=${DURATION%s}
[[ $secs =~ ^[0-9]+$ ]] || secs=60
BOUND=$(( ROUNDS * NT * (secs + 30) + 120 ))

declare -A CPU0
for sp in "${SERVER_PIDS[@]}"; do CPU0[${sp%%=*}]=$(cpu_s "${sp#*=}"); done

mkdir -p "$OUT"
echo "== compare echo: ${NT} targets, rounds: $ROUNDS, $DURATION each, at most ${BOUND}s" >&2
rc=0
timeout "$BOUND" "$LT" compare echo "${TARGETS[@]}" "${PID_FLAGS[@]}" \
  --rounds "$ROUNDS" --duration "$DURATION" --pairs 4 --in-flight 64 --payload 128 --no-progress \
  --report "$OUT/compare-cluster-echo.json" --chart "$OUT/compare-cluster-echo.svg" "$@" || rc=$?

# Server CPU over the whole compare (each server is busy only while its target runs).
echo "server CPU during the compare (s):"
for sp in "${SERVER_PIDS[@]}"; do
  name=${sp%%=*}
  awk -v n="$name" -v a="${CPU0[$name]}" -v b="$(cpu_s "${sp#*=}")" 'BEGIN{printf "  %-14s %6.1f\n", n, b - a}'
done
# How the callers found their providers across nodes (get_service on their node, or the
# address the registration returned).
if [ -f "$OUT/compare-cluster-echo.json" ]; then
  python3 - "$OUT/compare-cluster-echo.json" <<'PY' || true
import json, sys
rep = json.load(open(sys.argv[1]))
for t in rep.get("compare", {}).get("targets", []):
    for r in t.get("runs", [])[:1]:
        d = r.get("details", {})
        if "resolved_by_address" in d:
            print(f"  {t['name']}: callers resolved by get_service {d['resolved_by_get_service']}, "
                  f"by registered address {d['resolved_by_address']}; caller nodes {d['caller_nodes']}")
PY
fi
if [ "$rc" -ne 0 ]; then
  echo "compare exited with $rc (1: some run counted errors or failed; 124: time limit)" >&2
fi
exit "$rc"
