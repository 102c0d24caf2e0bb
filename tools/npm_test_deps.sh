#!/usr/bin/env bash
# Installs the npm clients the tests drive Strata with (tests/js/package.json,
# pinned by tests/js/package-lock.json) when they are missing. Idempotent;
# only the npm registry is contacted, and only when node_modules is absent
# or older than the lock file.
set -euo pipefail
cd "$(dirname "$0")/../tests/js"
command -v npm >/dev/null || { echo "npm_test_deps: npm not found (Debian package nodejs)" >&2; exit 1; }
if [ ! -d node_modules ] || [ package-lock.json -nt node_modules ]; then
  echo "npm_test_deps: installing test clients into tests/js" >&2
  npm ci --no-audit --no-fund --loglevel=error
  touch node_modules
fi
