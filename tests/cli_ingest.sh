#!/usr/bin/env bash
# cli_ingest.sh — `strata data ingest` end to end: a char-level tokenizer made
# by `strata tokenizer train --char`, a directory of .txt/.jsonl/.csv inputs
# ingested with --json (valid JSON, counts checked against Python's own
# reading of the inputs), the manifest's source hashes against sha256sum,
# the same bytes with --threads 1 and 2, a stale journal is ignored on a
# rerun, malformed input names file:line with exit 1, usage
# errors exit 2. Skips (exit 0 with a message) when this binary has no
# `data ingest`.
# Usage: bash tests/cli_ingest.sh <strata-binary> <build-dir>
set -euo pipefail
STRATA=${1:?usage: cli_ingest.sh <strata-binary> <build-dir>}
SRC=$(cd "$(dirname "$0")/.." && pwd)
PY=/usr/bin/python3
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
fail() { echo "cli_ingest: FAIL: $*" >&2; exit 1; }

if ! "$STRATA" data ingest --help >/dev/null 2>&1; then
  echo "cli_ingest: skipped: 'strata data ingest' is not in this binary"
  exit 0
fi
"$STRATA" data ingest --help | grep -q -- "--val-fraction F" || fail "--help lacks --val-fraction"

# inputs: 40 KB of Shakespeare as .txt, its lines as .jsonl, as .csv with quotes
mkdir -p "$tmp/in/sub"
head -c 40000 "$SRC/data/tinyshakespeare.txt" >"$tmp/in/a.txt"
$PY - "$tmp/in" <<'EOF' || fail "making inputs"
import csv, json, sys
d = sys.argv[1]
lines = [l for l in open(f"{d}/a.txt", encoding="utf-8").read().split("\n") if l.strip()]
with open(f"{d}/b.jsonl", "w", encoding="utf-8") as f:
    for l in lines[:300]:
        f.write(json.dumps({"id": len(l), "text": l + "\n"}) + "\n")
with open(f"{d}/sub/c.csv", "w", encoding="utf-8", newline="") as f:
    w = csv.writer(f, quoting=csv.QUOTE_MINIMAL, lineterminator="\r\n")
    w.writerow(["n", "text"])
    for i, l in enumerate(lines[300:600]):
        w.writerow([i, f'{l}, "quoted"\n{l}'])
EOF
{ cat "$SRC/data/tinyshakespeare.txt"; printf '"'; } >"$tmp/corpus.txt"   # Shakespeare has no '"'
"$STRATA" tokenizer train --char --input "$tmp/corpus.txt" --out "$tmp/char.json" >/dev/null 2>&1 \
  || fail "tokenizer train --char"

out=$("$STRATA" data ingest "$tmp/in" --out "$tmp/d1" --tokenizer "$tmp/char.json" \
      --val-fraction 0.1 --shard-tokens 20000 --threads 2 --json 2>"$tmp/err") \
  || { cat "$tmp/err" >&2; fail "ingest exited $?"; }
$PY - "$tmp" "$out" <<'EOF' || fail "ingest result/manifest check"
import hashlib, json, os, struct, sys
tmp, out = sys.argv[1], json.loads(sys.argv[2])
d = f"{tmp}/in"
a = open(f"{d}/a.txt", encoding="utf-8").read()
b = [json.loads(l)["text"] for l in open(f"{d}/b.jsonl", encoding="utf-8")]
import csv
c = [r["text"] for r in csv.DictReader(open(f"{d}/sub/c.csv", encoding="utf-8", newline=""))]
docs = [a] + b + c
assert out["complete"] and out["inputs"] == 3, out
assert out["documents"] == len(docs), (out["documents"], len(docs))
# char-level: tokens == characters (no separator: the tokenizer has no BOS/EOS)
assert out["train_tokens"] + out["val_tokens"] == sum(len(x) for x in docs), out
m = json.load(open(f"{tmp}/d1/manifest.json"))
assert m["format"] == "strata-token-shards" and m["dtype"] == "uint16"
for s in m["sources"]:
    h = hashlib.sha256(open(s["path"], "rb").read()).hexdigest()
    assert h == s["sha256"], s["path"]
assert hashlib.sha256(open(f"{tmp}/d1/tokenizer.json", "rb").read()).hexdigest() == m["tokenizer"]["sha256"]
total = 0
for sh in m["shards"]:
    raw = open(f"{tmp}/d1/{sh['file']}", "rb").read()
    magic, ver, tb, n = struct.unpack_from("<8sIIQ", raw)
    assert magic == b"STSHARD1" and ver == 1 and tb == 2 and n == sh["tokens"], sh
    assert len(raw) == 64 + 2 * n
    total += n
assert total == out["train_tokens"] + out["val_tokens"]
EOF

# the same bytes with one thread
"$STRATA" data ingest "$tmp/in" --out "$tmp/d2" --tokenizer "$tmp/char.json" \
  --val-fraction 0.1 --shard-tokens 20000 --threads 1 --quiet >/dev/null || fail "ingest --threads 1"
diff -r "$tmp/d1" "$tmp/d2" >/dev/null || fail "--threads 1 and 2 wrote different bytes"

# a rerun over an existing dataset gives the same bytes, and a stale journal
# (other parameters) is reported and ignored. Real interruptions and resumes
# are tested through the library in test_ingest (stop_after_inputs).
echo '{"version": 1, "fingerprint": {"stale": true}}' >"$tmp/d2/ingest.journal.json"
"$STRATA" data ingest "$tmp/in" --out "$tmp/d2" --tokenizer "$tmp/char.json" \
  --val-fraction 0.1 --shard-tokens 20000 --quiet >/dev/null 2>"$tmp/err" || fail "rerun"
grep -q "ignoring the journal" "$tmp/err" || fail "stale journal not reported"
diff -r "$tmp/d1" "$tmp/d2" >/dev/null || fail "rerun wrote different bytes"

# malformed input: exit 1, file:line in the message
printf '{"text": "ok"}\n{"text": oops}\n' >"$tmp/bad.jsonl"
set +e
"$STRATA" data ingest "$tmp/bad.jsonl" --out "$tmp/d3" --tokenizer "$tmp/char.json" 2>"$tmp/err"
rc=$?
set -e
[ $rc -eq 1 ] || fail "malformed input exited $rc, want 1"
grep -q "bad.jsonl:2" "$tmp/err" || fail "message lacks bad.jsonl:2: $(cat "$tmp/err")"

# usage errors exit 2
set +e
"$STRATA" data ingest "$tmp/in" --tokenizer "$tmp/char.json" 2>/dev/null; rc1=$?
"$STRATA" data ingest "$tmp/in" --out "$tmp/d4" --tokenizer "$tmp/char.json" --val-fraction 2 2>/dev/null; rc2=$?
"$STRATA" data ingest --out "$tmp/d4" --tokenizer "$tmp/char.json" 2>/dev/null; rc3=$?
set -e
[ $rc1 -eq 2 ] && [ $rc2 -eq 2 ] && [ $rc3 -eq 2 ] || fail "usage errors exited $rc1 $rc2 $rc3, want 2"
echo "cli_ingest: ok"
