#!/usr/bin/env bash
# Runs every test of rhizo: the Rust unit and integration tests, then the compatibility
# suite (tests/compat) with the real hypha-rpc client from PyPI against the real binary.
# Creates .venv with the pinned client on first use. Usage: bash tests/run.sh
set -euo pipefail
cd "$(dirname "$0")/.."

VENV=${RHIZO_VENV:-.venv}
REQ=tests/compat/requirements.txt
if [ ! -x "$VENV/bin/python" ] || ! cmp -s "$REQ" "$VENV/.requirements" 2>/dev/null; then
  echo "== setting up $VENV with the pinned hypha-rpc client"
  python3 -m venv "$VENV"
  "$VENV/bin/pip" install -q --disable-pip-version-check -r "$REQ"
  cp "$REQ" "$VENV/.requirements"
fi

echo "== cargo build (the binary the compat suite starts)"
cargo build --bin rhizo
echo "== cargo test"
cargo test --workspace --all-targets

TARGET_DIR=${CARGO_TARGET_DIR:-target}
export RHIZO_BIN=${RHIZO_BIN:-$(cd "$TARGET_DIR" && pwd)/debug/rhizo}
echo "== compat suite (hypha-rpc $(grep hypha-rpc "$REQ" | cut -d= -f3)) against $RHIZO_BIN"
"$VENV/bin/python" -m pytest tests/compat -q
