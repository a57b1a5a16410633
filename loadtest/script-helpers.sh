# Shell helpers shared by loadtest/compare.sh and loadtest/compare-cluster.sh (sourced, not
# run): a free loopback port, waiting for a condition, and stopping the processes in PIDS.

# A free TCP port on 127.0.0.1.
free_port() {
  python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1]); s.close()'
}

# Wait up to $2 seconds for `$1` to succeed.
wait_for() {
  local cmd=$1 secs=$2
  for _ in $(seq 1 $((secs * 10))); do
    if eval "$cmd" >/dev/null 2>&1; then return 0; fi
    sleep 0.1
  done
  return 1
}

# Stops every process in the PIDS array: TERM, up to 5 s, then KILL.
stop_pids() {
  for p in "${PIDS[@]}"; do
    kill "$p" 2>/dev/null || true
  done
  for p in "${PIDS[@]}"; do
    for _ in $(seq 1 50); do kill -0 "$p" 2>/dev/null || break; sleep 0.1; done
    kill -9 "$p" 2>/dev/null || true
  done
}
