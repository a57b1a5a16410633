#!/usr/bin/env bash
# Runs every test of rhizo: the Rust unit and integration tests, then the compatibility
# suite (tests/compat) with the real hypha-rpc clients from PyPI and npm against the real
# binary. Creates .venv and tests/compat-js/node_modules with the pinned clients on first
# use. Usage: bash tests/run.sh
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

# The npm client (hypha-rpc from the npm registry, pinned in tests/compat-js/package-lock.json).
JS=tests/compat-js
if command -v npm >/dev/null; then
  if ! cmp -s "$JS/package-lock.json" "$JS/node_modules/.rhizo-lock" 2>/dev/null; then
    echo "== installing the pinned hypha-rpc npm client into $JS/node_modules"
    npm ci --prefix "$JS" --no-audit --no-fund --loglevel=error
    cp "$JS/package-lock.json" "$JS/node_modules/.rhizo-lock"
  fi
else
  echo "warning: Node.js/npm not found: the npm client tests are skipped (and fail under CI)" >&2
fi

# The real AI coding CLIs the ai-cli worker tests drive (Claude Code, OpenCode), pinned in
# tests/ai-cli/package-lock.json and installed outside the clone (they are large).
AI=tests/ai-cli
export RHIZO_AI_CLIS=${RHIZO_AI_CLIS:-$HOME/.cache/rhizo-ai-clis}
if command -v npm >/dev/null; then
  if ! cmp -s "$AI/package-lock.json" "$RHIZO_AI_CLIS/.rhizo-lock" 2>/dev/null; then
    echo "== installing the pinned AI CLIs into $RHIZO_AI_CLIS"
    mkdir -p "$RHIZO_AI_CLIS"
    cp "$AI/package.json" "$AI/package-lock.json" "$RHIZO_AI_CLIS/"
    # `npm install` at the locked versions (the lock lacks the other platforms' optional
    # binaries, which `npm ci` insists on); it leaves the lock unchanged.
    npm install --prefix "$RHIZO_AI_CLIS" --no-save --no-audit --no-fund --loglevel=error
    cp "$AI/package-lock.json" "$RHIZO_AI_CLIS/.rhizo-lock"
  fi
fi

# The front-end packages the server serves to browser apps (the hypha-rpc JS client and
# Pyodide, pinned in assets/package-lock.json), installed outside the clone.
export RHIZO_ASSETS_DIR=${RHIZO_ASSETS_DIR:-$HOME/.cache/rhizo-assets}
if command -v npm >/dev/null; then
  bash assets/setup.sh
fi

echo "== cargo build (the binary the compat suite starts)"
cargo build --bin rhizo
cargo build -p rhizo-client --examples
echo "== cargo test"
cargo test --workspace --all-targets

TARGET_DIR=${CARGO_TARGET_DIR:-target}
export RHIZO_BIN=${RHIZO_BIN:-$(cd "$TARGET_DIR" && pwd)/debug/rhizo}
echo "== compat suite (hypha-rpc $(grep hypha-rpc "$REQ" | cut -d= -f3)) against $RHIZO_BIN"
"$VENV/bin/python" -m pytest tests/compat -q
