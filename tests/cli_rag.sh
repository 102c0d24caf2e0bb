#!/usr/bin/env bash
# cli_rag.sh — `strata rag` end to end: index the fixtures of tests/data/rag
# plus bad files (binary, empty, not UTF-8: skipped with their reason, exit
# 0), search (--json shape, the expected file first for a specific query),
# ask with llama2.c's stories260K as the generator (--json shape: answer,
# sources with n/path/line_start/line_end/score, cited ⊆ 1..n), a second
# index run that finds everything unchanged, a changed file re-indexed,
# list and docs, and usage errors (exit 2) and a missing index (exit 1).
# Usage: bash tests/cli_rag.sh <strata-binary> <build-dir>
set -euo pipefail
STRATA=${1:?usage: cli_rag.sh <strata-binary> <build-dir>}
SRC=$(cd "$(dirname "$0")/.." && pwd)
PY=/usr/bin/python3
MODEL=$SRC/tests/data/stories260K/stories260K.bin
TOK=$SRC/data/stories260K/tok512.bin
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
fail() { echo "cli_rag: FAIL: $*" >&2; exit 1; }
export STRATA_HOME=$tmp/home

mkdir -p "$tmp/docs/sub"
cp "$SRC"/tests/data/rag/sample.md "$SRC"/tests/data/rag/page.html "$SRC"/tests/data/rag/records.jsonl \
   "$SRC"/tests/data/rag/sample.pdf "$tmp/docs/"
printf 'Puffins nest in burrows on cliff tops.\n' > "$tmp/docs/sub/puffin.txt"
printf 'bin\0ary' > "$tmp/docs/blob.bin"
: > "$tmp/docs/empty.txt"
printf 'caf\xe9\n' > "$tmp/docs/latin1.txt"

# 1. index: five good files, three skipped with reasons
"$STRATA" rag index "$tmp/docs" --index t --chunk-tokens 40 --overlap 8 --json \
    > "$tmp/index.json" 2> "$tmp/index.err" || fail "rag index failed: $(cat "$tmp/index.err")"
$PY - "$tmp/index.json" <<'PYEOF' || fail "rag index --json"
import json, sys
j = json.load(open(sys.argv[1]))
assert j["files_seen"] == 8 and j["files_indexed"] == 5 and j["files_skipped"] == 3, j
assert j["chunks_total"] == j["chunks_added"] > 0, j
why = {s["path"].rsplit("/", 1)[1]: s["reason"] for s in j["skipped"]}
assert "binary" in why["blob.bin"] and "empty" in why["empty.txt"] and "UTF-8" in why["latin1.txt"], why
print("cli_rag: index:", j["files_indexed"], "files,", j["chunks_total"], "chunks; skipped", sorted(why))
PYEOF
grep -q "skipped .*latin1.txt" "$tmp/index.err" || fail "no warning for the non-UTF-8 file on stderr"

# 2. search
"$STRATA" rag search "Where do puffins nest?" --index t -k 3 --json > "$tmp/search.json"
$PY - "$tmp/search.json" <<'PYEOF' || fail "rag search --json"
import json, sys
j = json.load(open(sys.argv[1]))
assert j["mode"] == "hybrid" and 1 <= len(j["hits"]) <= 3, j
h = j["hits"][0]
assert set(h) == {"n", "chunk_id", "path", "line_start", "line_end", "score", "bm25_rank", "vec_rank", "text"}, h
assert h["path"].endswith("sub/puffin.txt") and h["line_start"] == 1 and h["line_end"] == 1, h
assert h["bm25_rank"] == 1 and h["vec_rank"] == 1, h
PYEOF
for m in bm25 vector; do
    "$STRATA" rag search "lighthouse keeper lens" --index t -k 2 --mode $m | grep -q "page.html:L" \
        || fail "search --mode $m did not find page.html"
done
"$STRATA" rag search "glaciers carve valleys" --index t -k 1 | grep -q "sample.pdf:L1-L2" \
    || fail "the PDF chunk does not span its pages 1-2"

# 3. ask (greedy; the tiny model's answer is nonsense, the shape is the test)
"$STRATA" rag ask "Where do herons nest?" --index t --model "$MODEL" --tokenizer "$TOK" \
    --temperature 0 -n 24 -k 3 --json > "$tmp/ask.json" || fail "rag ask --json"
$PY - "$tmp/ask.json" <<'PYEOF' || fail "rag ask --json shape"
import json, sys
j = json.load(open(sys.argv[1]))
assert isinstance(j["answer"], str) and j["answer"], j
assert 1 <= len(j["sources"]) <= 3, j
for i, s in enumerate(j["sources"]):
    assert set(s) == {"n", "path", "line_start", "line_end", "score"} and s["n"] == i + 1, s
    assert 1 <= s["line_start"] <= s["line_end"], s
assert j["sources"][0]["path"].endswith("sample.md"), j["sources"]
assert all(1 <= c <= len(j["sources"]) for c in j["cited"]), j
assert 1 <= j["generated_tokens"] <= 24 and j["prompt_tokens"] + 24 <= 512, j
print("cli_rag: ask:", len(j["sources"]), "sources,", j["prompt_tokens"], "prompt tokens")
PYEOF
"$STRATA" rag ask "Where do herons nest?" --index t --model "$MODEL" --tokenizer "$TOK" \
    --temperature 0 -n 16 -k 2 > "$tmp/ask.txt" || fail "rag ask (streaming)"
grep -Eq '^\[1\] .*sample\.md:L[0-9]+-L[0-9]+$' "$tmp/ask.txt" || fail "no '[1] path:Lstart-Lend' line: $(cat "$tmp/ask.txt")"

# 4. incremental: unchanged, then one file changed and one removed
"$STRATA" rag index "$tmp/docs" --index t --json > "$tmp/again.json" 2>/dev/null
$PY -c "import json,sys; j=json.load(open(sys.argv[1])); assert j['files_unchanged']==5 and j['files_indexed']==0 and j['chunks_added']==0, j" \
    "$tmp/again.json" || fail "second run re-indexed unchanged files"
printf 'Gannets plunge into the sea.\n' > "$tmp/docs/sub/puffin.txt"
rm "$tmp/docs/records.jsonl"
"$STRATA" rag index "$tmp/docs" --index t --json > "$tmp/third.json" 2>/dev/null
$PY -c "import json,sys; j=json.load(open(sys.argv[1])); assert j['files_indexed']==1 and j['files_removed']==1 and j['files_unchanged']==3, j" \
    "$tmp/third.json" || fail "changed/removed files: $(cat "$tmp/third.json")"
"$STRATA" rag search "gannets" --index t -k 1 --mode bm25 | grep -q "puffin.txt" || fail "changed file not re-indexed"
if "$STRATA" rag search "otters shellfish" --index t -k 5 --mode bm25 | grep -q "records.jsonl"; then
    fail "a removed file is still searched"
fi

# 5. list, docs
"$STRATA" rag list | grep -qx t || fail "rag list"
"$STRATA" rag docs --index t --json | $PY -c "
import json, sys
j = json.load(sys.stdin)
assert len(j['docs']) == 4 and all(len(d['sha256']) == 64 for d in j['docs']), j" || fail "rag docs --json"

# 6. errors: usage (2), a missing index (1, named), never a crash
set +e
"$STRATA" rag index "$tmp/docs" > /dev/null 2>&1; [ $? -eq 2 ] || fail "index without --index: not exit 2"
"$STRATA" rag search --index t > /dev/null 2>&1; [ $? -eq 2 ] || fail "search without QUERY: not exit 2"
"$STRATA" rag search "x" --index t --mode fuzzy > /dev/null 2>&1; [ $? -eq 2 ] || fail "bad --mode: not exit 2"
"$STRATA" rag frobnicate > /dev/null 2>&1; [ $? -eq 2 ] || fail "unknown subcommand: not exit 2"
"$STRATA" rag search "x" --index nope > /dev/null 2> "$tmp/err"; rc=$?
[ $rc -eq 1 ] && grep -q "nope" "$tmp/err" || fail "missing index: exit $rc, $(cat "$tmp/err")"
"$STRATA" rag index /nonexistent/dir --index t > /dev/null 2> "$tmp/err"; rc=$?
[ $rc -eq 1 ] && grep -q "/nonexistent/dir" "$tmp/err" || fail "missing path: exit $rc"
set -e
for sub in index search ask list docs; do
    "$STRATA" rag $sub --help | grep -q "usage: strata rag $sub" || fail "rag $sub --help"
done
echo "cli_rag: ok"
