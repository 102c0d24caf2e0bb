#!/usr/bin/env bash
# cli_dist.sh — distributed data-parallel `strata train` under mpirun
# (docs/L7-distributed.md), on a tiny configuration (2 layers, 32 wide,
# 20 steps, evaluation after every step):
#  1. with the same seed and global batch 8, `mpirun -np 2` (batch 4 per
#     rank) gives the loss curve of one process (batch 4, 2 micro-batches
#     accumulated): metrics.jsonl's train_loss and val_loss agree within a
#     relative 1e-5 at every step; the same with --zero 1 (to step 10),
#     whose optimizer memory per rank is half of one process's (the --json
#     summary's bytes); rank 1 logs to stderr with a "[rank 1]" prefix,
#     rank 0 alone writes. The runs use small buckets (several per step) and
#     all three --dist-overlap modes.
#  2. that 2-rank ZeRO checkpoint at step 10 resumes on 1 rank and on 2
#     ranks and continues the curve to step 20 within the same tolerance.
#  3. token shards (strata data ingest): the loader's per-rank slices give
#     2 ranks the curve of 1 process too.
#  4. failure: a rank killed with SIGKILL mid-run ends the job within 30 s
#     with mpirun's message naming the rank; a rank that hangs (SIGSTOP) ends
#     it within 30 s through --dist-timeout 3, rank 0 naming rank 1; no
#     process of either job is left.
# Open MPI's own allocations are not freed at exit, so under AddressSanitizer
# the mpirun'd ranks run with detect_leaks=0 (ASan itself stays on).
# Usage: bash tests/cli_dist.sh <strata-binary> <build-dir>
set -euo pipefail
STRATA=${1:?usage: cli_dist.sh <strata-binary> <build-dir>}
STRATA=$(cd "$(dirname "$STRATA")" && pwd)/$(basename "$STRATA")
SRC=$(cd "$(dirname "$0")/.." && pwd)
tmp=$(mktemp -d)
cleanup() {
  for p in $(pgrep -f "$tmp/" 2>/dev/null || true); do kill -9 "$p" 2>/dev/null || true; done
  rm -rf "$tmp"
}
trap cleanup EXIT
fail() { echo "cli_dist: FAIL: $*" >&2; exit 1; }

if ! command -v mpirun >/dev/null; then
  echo "cli_dist: mpirun not found (apt-get install openmpi-bin); skipped"
  exit 0
fi
# As root Open MPI wants --allow-run-as-root; 2 ranks on a small machine
# need --oversubscribe. MPIRUN_ARGS adds site options (e.g. --mca btl self,vader).
MPI=(mpirun --oversubscribe --bind-to none ${MPIRUN_ARGS:-})
[ "$(id -u)" = 0 ] && MPI+=(--allow-run-as-root)
export STRATA_THREADS=1 STRATA_TRACKING=off
MPI+=(-x STRATA_THREADS -x STRATA_TRACKING -x STRATA_HOME
      -x "ASAN_OPTIONS=${ASAN_OPTIONS:+$ASAN_OPTIONS:}detect_leaks=0")
export STRATA_HOME=${STRATA_HOME:-$tmp/home}

head -c 20000 "$SRC/data/tinyshakespeare.txt" >"$tmp/small.txt"
cat >"$tmp/tiny.json" <<'JSON'
{"base": "shakespeare-char-baby", "name": "tiny", "n_layer": 2, "n_head": 2, "n_embd": 32,
 "block_size": 16, "batch_size": 4, "eval_interval": 1, "eval_iters": 2, "max_iters": 20,
 "warmup_iters": 5, "lr_decay_iters": 20, "dropout": 0.0, "global_batch": 8}
JSON
TRAIN=(train --config "$tmp/tiny.json" --data "$tmp/small.txt" --json)

cat >"$tmp/cmp.py" <<'PYEOF'
import json, sys
def load(p):
    return {r["step"]: r for r in map(json.loads, open(p))}
a, b = load(sys.argv[1]), load(sys.argv[2])
steps = sorted(b)  # b: a run to step 10 or 20 (resumed: steps 0..20 from both of its parts)
assert steps and steps[-1] in (10, 20) and all(s in a for s in steps), f"steps {steps} vs {sorted(a)}"
worst = 0.0
for s in steps:
    for k in ("train_loss", "val_loss"):
        x, y = a[s][k], b[s][k]
        d = abs(x - y) / abs(x)
        worst = max(worst, d)
        assert d <= 1e-5, f"step {s} {k}: {x} vs {y} (relative {d:.2e})"
print(f"{len(steps)} steps agree, largest relative difference {worst:.2e}")
PYEOF

# 1. One process (2 micro-batches of 4) against 2 ranks (4 rows each).
"$STRATA" "${TRAIN[@]}" --out "$tmp/one" >"$tmp/one.out" 2>"$tmp/one.err" \
  || { cat "$tmp/one.err"; fail "1-process run exited"; }
grep -q "global batch 8 = batch 4 x 1 ranks x 2 accumulation" "$tmp/one.err" \
  || fail "1-process run does not accumulate 2 micro-batches"
# small buckets (20 KB: several per step, started in order as backward goes)
"${MPI[@]}" -np 2 "$STRATA" "${TRAIN[@]}" --out "$tmp/two" --bucket-mb 0.02 >"$tmp/two.out" 2>"$tmp/two.err" \
  || { cat "$tmp/two.err"; fail "2-rank run exited"; }
python3 "$tmp/cmp.py" "$tmp/one/metrics.jsonl" "$tmp/two/metrics.jsonl" || fail "2 ranks != 1 process"
grep -q "^\[rank 1\] data parallel: rank 1 of 2 (MPI)" "$tmp/two.err" || fail "no [rank 1] log"
grep -Eq "data parallel: rank 0 of 2 .* [2-9] gradient buckets" "$tmp/two.err" || fail "not several buckets"
if grep -q "rank 1" "$tmp/two.out"; then fail "rank 1 wrote to stdout"; fi
[ "$(grep -c '"done": true' "$tmp/two.out")" = 1 ] || fail "not exactly one summary (rank 0's)"

# ZeRO on 2 ranks to step 10 (its checkpoint is resumed in part 2)
# (the training thread polling MPI instead of the communication thread, several buckets)
"${MPI[@]}" -np 2 "$STRATA" "${TRAIN[@]}" --out "$tmp/twoz" --zero 1 --steps 10 --bucket-mb 0.03 \
  --dist-overlap poll >"$tmp/twoz.out" \
  2>"$tmp/twoz.err" || { cat "$tmp/twoz.err"; fail "2-rank ZeRO run exited"; }
python3 "$tmp/cmp.py" "$tmp/one/metrics.jsonl" "$tmp/twoz/metrics.jsonl" || fail "ZeRO 2 ranks != 1 process"
python3 - "$tmp/one.out" "$tmp/twoz.out" <<'PYEOF' || fail "ZeRO optimizer memory per rank"
import json, sys
one = json.loads(open(sys.argv[1]).read().splitlines()[-1])
two = json.loads(open(sys.argv[2]).read().splitlines()[-1])
n = one["params"]
assert one["optim_bytes_per_rank"] == 8 * n, one
assert two["optim_bytes_per_rank"] == 8 * ((n + 1) // 2), two   # rank 0's shard
print(f"optimizer memory per rank: {one['optim_bytes_per_rank']} -> {two['optim_bytes_per_rank']} bytes")
PYEOF
grep -q "optimizer memory per rank: .*ZeRO-1 shard" "$tmp/twoz.err" || fail "no ZeRO memory line"

# 2. The 2-rank ZeRO checkpoint at step 10, resumed on 1 and on 2 ranks.
cp -r "$tmp/twoz" "$tmp/r1"
cp -r "$tmp/twoz" "$tmp/r2"
"$STRATA" train --resume "$tmp/r1" --steps 20 >/dev/null 2>"$tmp/r1.err" \
  || { cat "$tmp/r1.err"; fail "resume on 1 rank exited"; }
"${MPI[@]}" -np 2 "$STRATA" train --resume "$tmp/r2" --steps 20 --zero 1 --dist-overlap none \
  >/dev/null 2>"$tmp/r2.err" \
  || { cat "$tmp/r2.err"; fail "resume on 2 ranks exited"; }
python3 "$tmp/cmp.py" "$tmp/one/metrics.jsonl" "$tmp/r1/metrics.jsonl" || fail "resume on 1 rank"
python3 "$tmp/cmp.py" "$tmp/one/metrics.jsonl" "$tmp/r2/metrics.jsonl" || fail "resume on 2 ranks"

# 3. Token shards through the loader's per-rank slices.
mkdir -p "$tmp/docs"
(cd "$tmp/docs" && split -b 1000 -d -a 2 --additional-suffix=.txt "$tmp/small.txt" doc)
"$STRATA" data ingest "$tmp/docs" --out "$tmp/shards" --tokenizer "$tmp/one/tokenizer.json" \
  --val-fraction 0.3 >/dev/null 2>"$tmp/ingest.err" || { cat "$tmp/ingest.err"; fail "ingest"; }
SH=(train --config "$tmp/tiny.json" --data "$tmp/shards" --json)
"$STRATA" "${SH[@]}" --out "$tmp/sh1" >/dev/null 2>"$tmp/sh1.err" || { cat "$tmp/sh1.err"; fail "shards, 1 process"; }
"${MPI[@]}" -np 2 "$STRATA" "${SH[@]}" --out "$tmp/sh2" >/dev/null 2>"$tmp/sh2.err" \
  || { cat "$tmp/sh2.err"; fail "shards, 2 ranks"; }
python3 "$tmp/cmp.py" "$tmp/sh1/metrics.jsonl" "$tmp/sh2/metrics.jsonl" || fail "shards: 2 ranks != 1 process"

# 4. Failure: SIGKILL, then SIGSTOP, of rank 1 in the middle of a long run.
cat >"$tmp/long.json" <<'JSON'
{"base": "shakespeare-char-baby", "name": "long", "n_layer": 2, "n_head": 2, "n_embd": 32,
 "block_size": 16, "batch_size": 4, "eval_interval": 100000, "eval_iters": 1, "max_iters": 1000000,
 "warmup_iters": 5, "lr_decay_iters": 20, "dropout": 0.0}
JSON
rank1_pid() { # the rank whose environment says OMPI_COMM_WORLD_RANK=1
  for p in $(pgrep -f "$tmp/long.json" || true); do
    if tr '\0' '\n' <"/proc/$p/environ" 2>/dev/null | grep -qx "OMPI_COMM_WORLD_RANK=1"; then echo "$p"; return; fi
  done
}
for how in KILL STOP; do
  log="$tmp/fail_$how.log"
  "${MPI[@]}" -np 2 "$STRATA" train --config "$tmp/long.json" --data "$tmp/small.txt" \
    --out "$tmp/fail_$how" --dist-timeout 3 >"$log" 2>&1 &
  job=$!
  p=""
  for _ in $(seq 1 100); do  # wait until rank 1 trains
    p=$(rank1_pid); [ -n "$p" ] && grep -q "memory budget" "$log" && break; sleep 0.2
  done
  [ -n "$p" ] || { cat "$log"; fail "$how: rank 1 never started"; }
  sleep 0.3
  t0=$(date +%s)
  kill -"$how" "$p"
  ended=""
  for _ in $(seq 1 300); do
    kill -0 "$job" 2>/dev/null || { ended=1; break; }
    sleep 0.1
  done
  t1=$(date +%s)
  [ -n "$ended" ] || { kill -9 "$job" 2>/dev/null; cat "$log"; fail "$how: the job still runs 30 s after rank 1 was stopped"; }
  wait "$job" && fail "$how: the job exited 0" || true
  if [ "$how" = KILL ]; then
    grep -Eq "rank 1 .*(exited|killed|signal)|process rank 1" "$log" || { cat "$log"; fail "KILL: no message naming rank 1"; }
  else
    grep -q "rank 1 did not answer" "$log" || { cat "$log"; fail "STOP: no message naming rank 1"; }
  fi
  sleep 0.5
  left=$(pgrep -f "$tmp/long.json" || true)
  [ -z "$left" ] || { ps -o pid,stat,cmd -p "$left"; fail "$how: processes left: $left"; }
  echo "cli_dist: rank 1 $how: the job ended in $((t1 - t0)) s naming rank 1"
done

echo "cli_dist: ok"
