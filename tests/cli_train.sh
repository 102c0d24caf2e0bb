#!/usr/bin/env bash
# cli_train.sh — `strata train` and `strata sample` end to end on a tiny
# configuration: metrics.jsonl has its fields, a run stopped at step 20 and
# resumed to 40 gives the same losses as one never stopped (bit for bit:
# only elapsed_s and tokens_per_s may differ), the model directory has its
# files, sample prints text, a llama configuration trains, usage errors
# exit 2. Usage: bash tests/cli_train.sh <strata-binary> <build-dir>
set -euo pipefail
STRATA=${1:?usage: cli_train.sh <strata-binary> <build-dir>}
SRC=$(cd "$(dirname "$0")/.." && pwd)
PY=python3
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
export STRATA_THREADS=${STRATA_THREADS:-2}

fail() { echo "cli_train: FAIL: $*" >&2; exit 1; }

head -c 20000 "$SRC/data/tinyshakespeare.txt" >"$tmp/small.txt" \
  || fail "data/tinyshakespeare.txt missing"
cat >"$tmp/tiny.json" <<'JSON'
{"base": "shakespeare-char-baby", "name": "tiny", "n_layer": 2, "n_head": 2, "n_embd": 32,
 "block_size": 16, "batch_size": 4, "eval_interval": 10, "eval_iters": 2, "max_iters": 40,
 "warmup_iters": 5, "lr_decay_iters": 40, "dropout": 0.1}
JSON

# 1. One run of 40 steps, evaluating every 10.
"$STRATA" train --config "$tmp/tiny.json" --data "$tmp/small.txt" --out "$tmp/a" \
  --steps 40 --eval-every 10 >"$tmp/a.out" 2>"$tmp/a.err" || { cat "$tmp/a.err"; fail "run a exited"; }
grep -q "memory budget" "$tmp/a.out" || fail "no memory budget line"
grep -q "peak RSS" "$tmp/a.out" || fail "no peak RSS line"
grep -q "activations the tape keeps [0-9.]* MB" "$tmp/a.out" || fail "budget without tape activations"
grep -Eq "memory: peak RSS .* [0-9.]+x \(RSS / budget\)" "$tmp/a.out" || fail "no peak/budget ratio"
for f in config.json model.safetensors tokenizer.json generation_config.json README.md \
         train_state.json train_state.safetensors metrics.jsonl; do
  [ -s "$tmp/a/$f" ] || fail "run a: $f missing"
done

# The baby's nanoGPT setting bias=False: no bias tensors, "bias": false in config.json.
grep -q '"bias": false' "$tmp/a/config.json" || fail "config.json lacks \"bias\": false"
if grep -aq 'ln_1.bias' "$tmp/a/model.safetensors"; then fail "bias tensors saved"; fi

# 2. The same run stopped at 20 and resumed to 40.
"$STRATA" train --config "$tmp/tiny.json" --data "$tmp/small.txt" --out "$tmp/b" \
  --steps 20 --eval-every 10 >/dev/null 2>"$tmp/b.err" || { cat "$tmp/b.err"; fail "run b exited"; }
"$STRATA" train --resume "$tmp/b" --steps 40 >/dev/null 2>"$tmp/b2.err" \
  || { cat "$tmp/b2.err"; fail "resume exited"; }

cat >"$tmp/cmp.py" <<'PYEOF'
import json, sys
a = [json.loads(l) for l in open(sys.argv[1])]
b = [json.loads(l) for l in open(sys.argv[2])]
keys = {"step", "train_loss", "val_loss", "lr", "tokens_per_s", "elapsed_s"}
for r in a + b:
    assert keys <= set(r) <= keys | {"data_wait_s", "data_wait_share"}, f"keys {sorted(r)}"
    assert isinstance(r["step"], int)
    for k in keys - {"step"}:
        assert isinstance(r[k], (int, float)) and r[k] >= 0, (k, r[k])
assert [r["step"] for r in a] == [0, 10, 20, 30, 40], [r["step"] for r in a]
assert [r["step"] for r in b] == [0, 10, 20, 30, 40], [r["step"] for r in b]
for x, y in zip(a, b):
    for k in ("step", "train_loss", "val_loss", "lr"):
        assert x[k] == y[k], f"step {x['step']}: {k} {x[k]!r} != {y[k]!r}"
assert a[-1]["train_loss"] < a[0]["train_loss"], "loss did not fall"
PYEOF
$PY "$tmp/cmp.py" "$tmp/a/metrics.jsonl" "$tmp/b/metrics.jsonl" || fail "metrics differ or are malformed"
cmp "$tmp/a/model.safetensors" "$tmp/b/model.safetensors" || fail "resumed weights differ"

# 3. Sampling from the model directory.
"$STRATA" sample --model "$tmp/a" --prompt "ROMEO:" -n 40 --seed 3 >"$tmp/s.txt" 2>/dev/null \
  || fail "sample exited"
[ "$(wc -c <"$tmp/s.txt")" -gt 40 ] || fail "sample printed too little: $(cat "$tmp/s.txt")"
head -c 6 "$tmp/s.txt" | grep -q "ROMEO:" || fail "sample does not start with the prompt"
"$STRATA" sample --model "$tmp/a" -n 20 --temperature 0 --json >"$tmp/s.json" 2>/dev/null \
  || fail "sample --json"
$PY -c "import json,sys; d=json.load(open(sys.argv[1])); assert d['n_tokens']==20, d" "$tmp/s.json" \
  || fail "sample --json output"

# 4. A llama configuration trains and samples.
cat >"$tmp/llama.json" <<'JSON'
{"base": "shakespeare-char-llama-baby", "name": "tiny-llama", "n_layer": 1, "n_head": 2,
 "n_kv_head": 1, "n_embd": 16, "n_ff": 32, "block_size": 8, "batch_size": 2,
 "eval_interval": 5, "eval_iters": 1, "max_iters": 10, "warmup_iters": 2, "lr_decay_iters": 10}
JSON
"$STRATA" train --config "$tmp/llama.json" --data "$tmp/small.txt" --out "$tmp/l" --json \
  >"$tmp/l.out" 2>"$tmp/l.err" || { cat "$tmp/l.err"; fail "llama run exited"; }
tail -1 "$tmp/l.out" | grep -q '"done": true' || fail "llama --json summary missing"
grep -q '"model_type": *"llama"' "$tmp/l/config.json" || fail "llama config.json"
"$STRATA" sample --model "$tmp/l" -n 5 >/dev/null 2>&1 || fail "llama sample"

# 5. Usage errors exit 2 with a message; --help exits 0.
set +e
"$STRATA" train --config no-such-config --data "$tmp/small.txt" 2>"$tmp/e1"; rc=$?
"$STRATA" train --config shakespeare-char-baby 2>/dev/null; rc1=$?
"$STRATA" train --resume "$tmp/b" --batch 3 2>/dev/null; rc2=$?
"$STRATA" sample 2>/dev/null; rc3=$?
"$STRATA" sample --model "$tmp/nonexistent" 2>"$tmp/e2"; rc4=$?
set -e
[ $rc -eq 2 ] || fail "bad config name exited $rc, want 2"
grep -q "unknown configuration" "$tmp/e1" || fail "bad config message: $(cat "$tmp/e1")"
[ $rc1 -eq 2 ] || fail "missing --data exited $rc1"
[ $rc2 -eq 2 ] || fail "--resume with --batch exited $rc2"
[ $rc3 -eq 2 ] || fail "sample without --model exited $rc3"
[ $rc4 -eq 1 ] || fail "sample of a missing model exited $rc4"
grep -q "nonexistent" "$tmp/e2" || fail "missing model message: $(cat "$tmp/e2")"
"$STRATA" train --help | grep -q "shakespeare-char-baby" || fail "train --help"
"$STRATA" sample --help >/dev/null || fail "sample --help"
echo "cli_train: ok"
