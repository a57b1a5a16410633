#!/usr/bin/env bash
# Installs the front-end packages rhizo serves (assets/package.json, pinned by its lock file)
# from the npm registry into the assets directory: $RHIZO_ASSETS_DIR, default
# $HOME/.cache/rhizo-assets (the default of `rhizo serve --assets-dir`). Idempotent: does
# nothing when the installed lock matches. Usage: bash assets/setup.sh
set -euo pipefail
cd "$(dirname "$0")"
DIR=${RHIZO_ASSETS_DIR:-$HOME/.cache/rhizo-assets}
if cmp -s package-lock.json "$DIR/.rhizo-lock" 2>/dev/null; then
  exit 0
fi
command -v npm >/dev/null || { echo "npm is required (apt-get install nodejs npm)" >&2; exit 1; }
echo "== installing the pinned front-end assets (hypha-rpc, pyodide) into $DIR"
mkdir -p "$DIR"
cp package.json package-lock.json "$DIR/"
npm ci --prefix "$DIR" --no-audit --no-fund --loglevel=error
cp package-lock.json "$DIR/.rhizo-lock"
