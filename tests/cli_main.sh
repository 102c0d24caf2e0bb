#!/usr/bin/env bash
# cli_main.sh — the strata command as a whole: --version, --help, unknown
# commands (exit 2), every subcommand's --help (exit 0, mentions usage), and
# `strata bench ops --quick --json` emitting valid JSON Lines with every
# section. Usage: bash tests/cli_main.sh <strata-binary> <build-dir>
set -euo pipefail
STRATA=${1:?usage: cli_main.sh <strata-binary> <build-dir>}
PY=/usr/bin/python3
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
fail() { echo "cli_main: FAIL: $*" >&2; exit 1; }

"$STRATA" --version | grep -Eq '^strata [0-9]+\.[0-9]+\.[0-9]+$' || fail "--version"
"$STRATA" --help >"$tmp/help" || fail "--help exited $?"
grep -q "usage: strata" "$tmp/help" || fail "--help has no usage line"

set +e
"$STRATA" >/dev/null 2>&1; rc=$?
[ $rc -eq 2 ] || fail "no command: exit $rc, want 2"
"$STRATA" no-such-command >/dev/null 2>"$tmp/err"; rc=$?
[ $rc -eq 2 ] || fail "unknown command: exit $rc, want 2"
grep -q "unknown command 'no-such-command'" "$tmp/err" || fail "unknown command message"
"$STRATA" bench no-such-bench >/dev/null 2>&1; rc=$?
[ $rc -eq 2 ] || fail "unknown bench: exit $rc, want 2"
"$STRATA" bench ops --reps 0 >/dev/null 2>&1; rc=$?
[ $rc -eq 2 ] || fail "bench ops --reps 0: exit $rc, want 2"
set -e

# Every subcommand listed by --help has a --help of its own.
for sub in $(sed -n 's/^  \([a-z][a-z-]*\) .*/\1/p' "$tmp/help"); do
  "$STRATA" "$sub" --help >"$tmp/sub" 2>&1 || fail "$sub --help exited $?"
  grep -qi "usage" "$tmp/sub" || fail "$sub --help prints no usage"
done

# bench ops: every section present, every ratio a positive number.
"$STRATA" bench ops --quick --json >"$tmp/ops.jsonl" || fail "bench ops --quick exited $?"
$PY - "$tmp/ops.jsonl" <<'PYEOF' || fail "bench ops --json output"
import json, sys
rows = [json.loads(l) for l in open(sys.argv[1]) if l.strip()]
sections = {r["section"] for r in rows}
assert sections == {"matmul", "memory", "simd"}, sections
for r in rows:
    if r["section"] in ("matmul", "memory"):
        assert r["ratio"] > 0, r
    else:
        assert r["speedup_vs_scalar"] > 0, r
assert any(r["section"] == "simd" and r["level"] == "scalar" for r in rows)
PYEOF
echo "cli_main: ok"
