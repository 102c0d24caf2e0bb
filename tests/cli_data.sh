#!/usr/bin/env bash
# cli_data.sh — `strata data inspect|cat` end to end on the Parquet files in
# tests/data/parquet: cat of every types*.parquet equals types.expected.jsonl
# row for row (float32 compared as float32, int64 exactly), cat of every
# shakespeare*.parquet matches the summary (rows, n_chars sum, SHA-256 of the
# texts), --columns and --limit project, inspect --json is valid JSON with
# the right counts, a damaged file fails naming the file, usage errors exit 2.
# Usage: bash tests/cli_data.sh <strata-binary> <build-dir>
set -euo pipefail
STRATA=${1:?usage: cli_data.sh <strata-binary> <build-dir>}
SRC=$(cd "$(dirname "$0")/.." && pwd)
D="$SRC/tests/data/parquet"
PY=/usr/bin/python3
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
fail() { echo "cli_data: FAIL: $*" >&2; exit 1; }

# 1. every file reads back its expected rows
$PY - "$STRATA" "$D" <<'EOF2' || fail "rows differ from the expected ones"
import glob, hashlib, json, struct, subprocess, sys
strata, d = sys.argv[1], sys.argv[2]
f32 = lambda x: None if x is None else struct.unpack('f', struct.pack('f', x))[0]
exp = [json.loads(l) for l in open(f"{d}/types.expected.jsonl")]
for f in sorted(glob.glob(f"{d}/types*.parquet")):
    rows = [json.loads(l) for l in subprocess.run([strata, "data", "cat", f], check=True, capture_output=True, text=True).stdout.splitlines()]
    assert len(rows) == len(exp), (f, len(rows))
    for a, b in zip(rows, exp):
        assert list(a) == list(b), (f, list(a))
        for k in b:
            x, y = a[k], b[k]
            if k == "f32": x, y = f32(x), f32(y)
            if k == "embedding": x, y = [f32(v) for v in x], [f32(v) for v in y]
            assert x == y, (f, k, x, y)
summ = json.load(open(f"{d}/shakespeare.expected_summary.json"))
for f in sorted(glob.glob(f"{d}/shakespeare*.parquet")):
    rows = [json.loads(l) for l in subprocess.run([strata, "data", "cat", f], check=True, capture_output=True, text=True).stdout.splitlines()]
    assert len(rows) == summ["rows"], f
    assert sum(r["n_chars"] for r in rows) == summ["sum_n_chars"], f
    assert [r["id"] for r in rows] == list(range(len(rows))), f
    h = hashlib.sha256("\n\n".join(r["text"] for r in rows).encode()).hexdigest()
    assert h == summ["sha256_of_texts_joined_by_blank_line"], f
    assert rows[-1] == summ["last_row"], f
EOF2

# 2. projection and limit
got=$("$STRATA" data cat "$D/types.parquet" --columns name,id --limit 3) || fail "cat --columns exited $?"
[ "$(echo "$got" | wc -l)" = 3 ] || fail "--limit 3 gave: $got"
[ "$(echo "$got" | sed -n 2p)" = '{"name":"row-1","id":1}' ] || fail "projection: $got"
[ "$(echo "$got" | sed -n 1p)" = '{"name":"","id":0}' ] || fail "projection: $got"
"$STRATA" data cat "$D/types.parquet" --limit 0 | wc -c | grep -qx 0 || fail "--limit 0 printed rows"

# 3. inspect: text and JSON
"$STRATA" data inspect "$D/shakespeare.parquet" > "$tmp/insp.txt" || fail "inspect exited $?"
grep -q "7222 in 15 row groups" "$tmp/insp.txt" || fail "inspect text: $(head -5 "$tmp/insp.txt")"
grep -q "RLE_DICTIONARY" "$tmp/insp.txt" || fail "inspect shows no encodings"
"$STRATA" data inspect "$D/types.duckdb.parquet" --json > "$tmp/insp.json" || fail "inspect --json exited $?"
$PY - "$tmp/insp.json" <<'EOF2' || fail "inspect --json content"
import json, sys
o = json.load(open(sys.argv[1]))
assert o["rows"] == 1000 and o["n_row_groups"] == 1
assert [c["name"] for c in o["schema"]["children"]][-1] == "embedding"
emb = o["schema"]["children"][-1]
assert emb["logical"] == "LIST" and emb["children"][0]["repetition"] == "REPEATED"
cols = o["row_groups"][0]["columns"]
assert cols[0]["codec"] == "ZSTD" and cols[0]["statistics"]["min"] == 0 and cols[0]["statistics"]["max"] == 999
cat = [c for c in cols if c["path"] == "category"][0]
assert "PLAIN_DICTIONARY" in cat["encodings"]
EOF2

# 4. damaged files fail with a message naming the file
head -c 5000 "$D/types.parquet" > "$tmp/cut.parquet"
if "$STRATA" data cat "$tmp/cut.parquet" > /dev/null 2> "$tmp/err"; then fail "truncated file accepted"; fi
grep -q "cut.parquet" "$tmp/err" || fail "error does not name the file: $(cat "$tmp/err")"
if "$STRATA" data inspect "$tmp/missing.parquet" 2> "$tmp/err"; then fail "missing file accepted"; fi
grep -q "missing.parquet" "$tmp/err" || fail "error does not name the file"

# 5. usage
"$STRATA" data --help | grep -q "data cat" || fail "data --help"
"$STRATA" data cat --help | grep -q -- "--limit" || fail "data cat --help"
set +e
"$STRATA" data cat > /dev/null 2>&1; [ $? = 2 ] || fail "cat without FILE should exit 2"
"$STRATA" data cat "$D/types.parquet" --columns nope > /dev/null 2>&1; [ $? = 2 ] || fail "unknown column should exit 2"
"$STRATA" data frobnicate > /dev/null 2>&1; [ $? = 2 ] || fail "unknown subcommand should exit 2"
set -e
echo "cli_data: ok"
