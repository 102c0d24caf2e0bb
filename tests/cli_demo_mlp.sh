#!/usr/bin/env bash
# cli_demo_mlp.sh — the autograd demo trains: examples/train_mlp exits 0 only
# when the final loss is below half the first (its own check), and the loss
# column must fall. Usage: bash tests/cli_demo_mlp.sh <strata-binary> <build-dir>
set -euo pipefail
BUILD=${2:?usage: cli_demo_mlp.sh <strata-binary> <build-dir>}
out=$("$BUILD/examples/train_mlp" --steps 600 --every 100) || { echo "train_mlp failed" >&2; exit 1; }
echo "$out"
first=$(echo "$out" | awk '$1 ~ /^[0-9]+$/ {print $2; exit}')
last=$(echo "$out" | awk '$1 ~ /^[0-9]+$/ {v=$2} END {print v}')
awk -v a="$first" -v b="$last" 'BEGIN { exit !(b < a / 4) }' || { echo "loss $first -> $last did not fall 4x" >&2; exit 1; }
"$BUILD/examples/train_mlp" --steps x >/dev/null 2>&1 && { echo "--steps x accepted" >&2; exit 1; }
echo "cli_demo_mlp: ok"
