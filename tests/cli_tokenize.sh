#!/usr/bin/env bash
# cli_tokenize.sh — `strata tokenize` and `strata tokenizer train` end to end:
# a reference string through the GPT-2 folder and the cl100k .tiktoken (ids
# from tests/data/*/reference_tokens.jsonl, made by js-tiktoken), --json is
# valid JSON, --decode round trips, names resolve through STRATA_DATA_DIR,
# training writes a tokenizer.json that loads back, bad paths fail naming
# the path, usage errors exit 2.
# Usage: bash tests/cli_tokenize.sh <strata-binary> <build-dir>
set -euo pipefail
STRATA=${1:?usage: cli_tokenize.sh <strata-binary> <build-dir>}
SRC=$(cd "$(dirname "$0")/.." && pwd)
PY=/usr/bin/python3
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
fail() { echo "cli_tokenize: FAIL: $*" >&2; exit 1; }

# 1. reference strings (first line of each reference file)
got=$("$STRATA" tokenize --tokenizer "$SRC/data/gpt2-bpe" 'Hello, world!') || fail "gpt2 exited $?"
[ "$got" = "15496 11 995 0" ] || fail "gpt2 ids: $got"
got=$("$STRATA" tokenize --tokenizer "$SRC/data/cl100k/cl100k_base.tiktoken" 'Hello, world!') || fail "cl100k exited $?"
[ "$got" = "9906 11 1917 0" ] || fail "cl100k ids: $got"
# a sample of reference lines through stdin (test_tokenizer checks them all)
$PY - "$STRATA" "$SRC" <<'EOF2' || fail "gpt2/cl100k references via stdin"
import json, subprocess, sys
strata, src = sys.argv[1], sys.argv[2]
for tok, ref in (("data/gpt2-bpe", "tests/data/gpt2-bpe/reference_tokens.jsonl"),
                 ("data/cl100k/cl100k_base.tiktoken", "tests/data/cl100k/reference_tokens.jsonl")):
    for line in open(f"{src}/{ref}", encoding="utf-8").readlines()[::4]:
        r = json.loads(line)
        out = subprocess.run([strata, "tokenize", "--tokenizer", f"{src}/{tok}", "--json", "-"],
                             input=r["text"].encode(), capture_output=True, check=True).stdout
        ids = json.loads(out)["ids"]
        assert ids == r["ids"], (tok, r["text"], ids)
        if "ids_allowed_special" in r:
            out = subprocess.run([strata, "tokenize", "--tokenizer", f"{src}/{tok}", "--allow-special", "-"],
                                 input=r["text"].encode(), capture_output=True, check=True).stdout
            assert [int(x) for x in out.split()] == r["ids_allowed_special"], (tok, r["text"])
        back = subprocess.run([strata, "tokenize", "--tokenizer", f"{src}/{tok}", "--decode"],
                              input=" ".join(map(str, r["ids"])).encode(), capture_output=True, check=True).stdout
        assert back == r["text"].encode(), (tok, back)
EOF2

# 2. --json is one valid JSON object; names via STRATA_DATA_DIR
STRATA_DATA_DIR="$SRC/data" "$STRATA" tokenize --tokenizer cl100k_base --json 'Hello, world!' >"$tmp/j.json" \
    || fail "--json exited $?"
$PY -c 'import json,sys; d=json.load(open(sys.argv[1])); assert d=={"ids":[9906,11,1917,0]}, d' "$tmp/j.json" \
    || fail "--json output: $(cat "$tmp/j.json")"

# 3. --decode round trip (args and stdin, text and JSON)
got=$(STRATA_DATA_DIR="$SRC/data" "$STRATA" tokenize --tokenizer gpt2 --decode 15496 11 995 0) || fail "decode exited $?"
[ "$got" = "Hello, world!" ] || fail "decode: $got"
got=$(echo '{"ids": [15496, 11, 995, 0]}' | "$STRATA" tokenize --tokenizer "$SRC/data/gpt2-bpe" --decode --json -)
$PY -c 'import json,sys; assert json.loads(sys.argv[1])=={"text":"Hello, world!"}' "$got" || fail "decode --json: $got"
got=$("$STRATA" tokenize --tokenizer "$SRC/data/gpt2-bpe" --allow-special 'a<|endoftext|>b') || fail "special"
[ "$got" = "64 50256 65" ] || fail "--allow-special: $got"
# llama2.c tokenizer with BOS (run.c's prompt ids for "Once upon a time")
want=$($PY -c 'import json,sys; print(" ".join(map(str, json.loads(open(sys.argv[1]).readline())["prompt_ids"])))' \
    "$SRC/tests/data/stories260K/reference_greedy.jsonl")
got=$("$STRATA" tokenize --tokenizer "$SRC/data/stories260K/tok512.bin" --bos 'Once upon a time')
[ "$got" = "$want" ] || fail "tok512: $got, want $want"

# 4. training writes a tokenizer.json that loads back and round trips
head -c 20000 "$SRC/data/tinyshakespeare.txt" >"$tmp/corpus.txt"
"$STRATA" tokenizer train --input "$tmp/corpus.txt" --vocab-size 300 --out "$tmp/bpe.json" 2>/dev/null || fail "train exited $?"
"$STRATA" tokenizer train --input "$tmp/corpus.txt" --char --out "$tmp/char.json" --json >"$tmp/sum.json" || fail "train --char exited $?"
$PY -c 'import json,sys; d=json.load(open(sys.argv[1])); assert d["kind"]=="char" and d["vocab_size"]>20, d' "$tmp/sum.json" \
    || fail "train --json summary"
for t in bpe char; do
    ids=$("$STRATA" tokenize --tokenizer "$tmp/$t.json" - <"$tmp/corpus.txt") || fail "$t tokenize"
    "$STRATA" tokenize --tokenizer "$tmp/$t.json" --decode $ids >"$tmp/back.txt" || fail "$t decode"
    cmp -s "$tmp/back.txt" "$tmp/corpus.txt" || fail "$t round trip differs"
done

# 5. failures: bad paths name the path; bad files exit 1; usage errors exit 2
set +e
"$STRATA" tokenize --tokenizer "$tmp/no/such/tok.json" hi 2>"$tmp/err"; rc=$?
set -e
[ $rc -eq 1 ] || fail "bad path exited $rc"
grep -q "$tmp/no/such/tok.json" "$tmp/err" || fail "bad path message: $(cat "$tmp/err")"
printf '{"model": ' >"$tmp/bad.json"
set +e
"$STRATA" tokenize --tokenizer "$tmp/bad.json" hi 2>"$tmp/err"; rc=$?
set -e
[ $rc -eq 1 ] && grep -q "bad.json" "$tmp/err" || fail "bad JSON: rc $rc, $(cat "$tmp/err")"
expect2() {
    set +e; "$STRATA" "$@" >/dev/null 2>&1; rc=$?; set -e
    [ $rc -eq 2 ] || fail "$* exited $rc, want 2"
}
expect2 tokenize hi
expect2 tokenize --tokenizer
expect2 tokenize --bogus --tokenizer gpt2
expect2 tokenizer train --input "$tmp/corpus.txt" --out "$tmp/x.json"
expect2 tokenizer train --input "$tmp/corpus.txt" --out "$tmp/x.json" --vocab-size 10
expect2 tokenizer frobnicate
set +e
STRATA_DATA_DIR="$SRC/data" "$STRATA" tokenize --tokenizer gpt2 --decode 15496 abc >/dev/null 2>&1; rc=$?
set -e
[ $rc -eq 2 ] || fail "decode junk exited $rc"
"$STRATA" tokenize --help | grep -q -- --allow-special || fail "tokenize --help"
"$STRATA" tokenizer train --help | grep -q -- --vocab-size || fail "tokenizer --help"
echo "cli_tokenize: ok"
