#!/usr/bin/env bash
# cli_runs.sh — `strata runs` end to end on a fresh SQLite store: import two
# runs from metrics.jsonl files, list (table, --json, --filter, --sort,
# --limit), show, compare (differing params), export (CSV parsed by Python's
# csv module, JSON), delete; a bad filter exits 1 naming the column, an
# injection attempt is refused and leaves the store intact, usage errors
# exit 2. Usage: bash tests/cli_runs.sh <strata-binary> <build-dir>
set -euo pipefail
STRATA=${1:?usage: cli_runs.sh <strata-binary> <build-dir>}
PY=/usr/bin/python3
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
export STRATA_HOME="$tmp/home"
unset STRATA_TRACKING_URI
T=(--tracking "sqlite://$tmp/t.db")
fail() { echo "cli_runs: FAIL: $*" >&2; exit 1; }

cat >"$tmp/a.jsonl" <<'J'
{"step": 0, "train_loss": 4.2, "val_loss": 4.25, "lr": 0.0, "tokens_per_s": 1000.5, "elapsed_s": 0.1}
{"step": 10, "train_loss": 2.1, "val_loss": 1.5, "lr": 0.001, "tokens_per_s": 1200.0, "elapsed_s": 1.1}
J
cat >"$tmp/b.jsonl" <<'J'
{"step": 0, "train_loss": 4.3, "val_loss": 4.2, "lr": 0.0}
{"step": 10, "train_loss": 2.5, "val_loss": 1.7, "lr": 0.001}
{"step": 20, "train_loss": 2.4, "val_loss": 1.65, "lr": 0.0005}
J
echo "weights" >"$tmp/model.bin"
a=$("$STRATA" runs import "$tmp/a.jsonl" "${T[@]}" --name a --param n_layer=4 --param lr=0.001 --tag x=y \
    --artifact "$tmp/model.bin" 2>/dev/null) || fail "import a exited $?"
b=$("$STRATA" runs import "$tmp/b.jsonl" "${T[@]}" --name b --experiment other --param n_layer=6 \
    --param lr=0.001 2>/dev/null) || fail "import b exited $?"
[[ $a =~ ^[0-9a-f]{32}$ ]] || fail "import printed '$a', not an id"

# list: table and JSON
out=$("$STRATA" runs list "${T[@]}") || fail "list exited $?"
grep -q "${a:0:8}" <<<"$out" && grep -q "${b:0:8}" <<<"$out" || fail "list lacks a run: $out"
"$STRATA" runs list "${T[@]}" --json >"$tmp/l.json" || fail "list --json exited $?"
$PY - "$tmp/l.json" "$a" "$b" <<'P' || fail "list --json: bad document"
import json, sys
l = json.load(open(sys.argv[1])); a, b = sys.argv[2], sys.argv[3]
assert [r["id"] for r in l] == [b, a], [r["id"] for r in l]   # newest first
ra = l[1]
assert ra["status"] == "finished" and ra["params"] == {"lr": "0.001", "n_layer": "4"}, ra
assert ra["metrics"]["val_loss"]["last"] == 1.5 and ra["metrics"]["val_loss"]["n"] == 2, ra["metrics"]
assert ra["tags"] == {"x": "y"} and ra["artifacts"][0]["name"] == "model.bin", ra
assert l[0]["metrics"]["val_loss"]["last"] == 1.65 and l[0]["experiment"] == "other"
P
sel() { "$STRATA" runs list "${T[@]}" --json "$@" | $PY -c 'import json,sys; print(",".join(r["name"] for r in json.load(sys.stdin)))'; }
[ "$(sel --filter 'metrics.val_loss < 1.6 and params.n_layer = 4 and tags.x = '"'y'"' and status = '"'finished'")" = a ] ||
    fail "the issue's filter did not select a"
[ "$(sel --filter 'params.n_layer >= 4' --sort metrics.val_loss)" = a,b ] || fail "sort metrics.val_loss"
[ "$(sel --sort -metrics.val_loss)" = b,a ] || fail "sort -metrics.val_loss"
[ "$(sel --experiment other)" = b ] || fail "--experiment"
[ "$(sel --sort name --limit 1)" = a ] || fail "--limit"

# bad filters: exit 1, the column in the message; injection refused, store intact
set +e
"$STRATA" runs list "${T[@]}" --filter 'metrics.val_loss <' >/dev/null 2>"$tmp/err"; rc=$?
set -e
[ $rc -eq 1 ] && grep -q "column 19" "$tmp/err" || fail "bad filter: rc $rc, $(cat "$tmp/err")"
set +e
"$STRATA" runs list "${T[@]}" --filter "params.x = '1'; DROP TABLE runs; --'" >/dev/null 2>"$tmp/err"; rc=$?
set -e
[ $rc -eq 1 ] && grep -q "column 15" "$tmp/err" || fail "injection: rc $rc, $(cat "$tmp/err")"
[ "$(sel --filter "name = 'a'' OR ''1''=''1'")" = "" ] || fail "quoted injection matched"
[ "$(sel --sort name)" = a,b ] || fail "runs lost after injection attempts"

# show, compare
"$STRATA" runs show "${T[@]}" "${a:0:6}" >"$tmp/show" || fail "show exited $?"
for w in "$a" n_layer val_loss model.bin finished; do grep -q "$w" "$tmp/show" || fail "show lacks $w"; done
"$STRATA" runs compare "${T[@]}" "$a" "$b" --json >"$tmp/c.json" || fail "compare exited $?"
$PY - "$tmp/c.json" <<'P' || fail "compare --json"
import json, sys
c = json.load(open(sys.argv[1]))
assert c["differing_params"] == ["n_layer"], c
assert c["params"]["n_layer"] == ["4", "6"] and c["metrics"]["val_loss"] == [1.5, 1.65], c
P
"$STRATA" runs compare "${T[@]}" "$a" "$b" | grep -q '^\* n_layer' || fail "compare table marks no difference"

# export
"$STRATA" runs export "${T[@]}" --format csv --out "$tmp/e.csv" || fail "export csv exited $?"
$PY - "$tmp/e.csv" "$a" <<'P' || fail "export csv"
import csv, sys
rows = list(csv.DictReader(open(sys.argv[1], newline="")))
assert len(rows) == 2 and rows[0]["id"] == sys.argv[2], rows
assert rows[0]["params.n_layer"] == "4" and float(rows[1]["metrics.val_loss"]) == 1.65, rows
assert rows[0]["tags.x"] == "y" and rows[1]["tags.x"] == "", rows
P
"$STRATA" runs export "${T[@]}" --format json --experiment other | $PY -c \
    'import json,sys; l=json.load(sys.stdin); assert [r["name"] for r in l]==["b"], l' || fail "export json"

# delete
"$STRATA" runs delete "${T[@]}" "$b" >/dev/null || fail "delete exited $?"
[ "$(sel)" = a ] || fail "delete left $(sel)"
set +e
"$STRATA" runs show "${T[@]}" "$b" >/dev/null 2>&1; rc=$?
set -e
[ $rc -eq 1 ] || fail "show of a deleted run exited $rc"

# usage
"$STRATA" runs --help >"$tmp/help" || fail "--help exited $?"
for w in list show compare export delete import --tracking --filter --sort --limit --format --json STRATA_HOME; do
    grep -q -- "$w" "$tmp/help" || fail "help lacks $w"
done
expect2() { set +e; "$STRATA" runs "$@" >/dev/null 2>&1; rc=$?; set -e; [ $rc -eq 2 ] || fail "runs $* exited $rc, want 2"; }
expect2 bogus
expect2 list --limit 0
expect2 list --bogus
expect2 export --format xml
expect2 show
expect2 list --filter
echo "cli_runs: ok"
