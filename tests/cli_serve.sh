#!/usr/bin/env bash
# cli_serve.sh — `strata serve` end to end with OpenAI's own Node client
# (npm "openai", installed into tests/js by tools/npm_test_deps.sh):
# the llama2.c stories260K model is served with an API key; the client
# lists models, chats (plain and streamed: the same text), completes,
# embeds and gets OpenAI-shaped errors. Then curl checks /health, /ready,
# /metrics and the 401 without a key, and SIGTERM ends the server with
# exit status 0 (graceful drain).
# Usage: bash tests/cli_serve.sh <strata-binary> <build-dir>
set -euo pipefail
STRATA=${1:?usage: cli_serve.sh <strata-binary> <build-dir>}
SRC=$(cd "$(dirname "$0")/.." && pwd)
tmp=$(mktemp -d)
pid=
cleanup() { [ -n "$pid" ] && kill "$pid" 2>/dev/null || true; rm -rf "$tmp"; }
trap cleanup EXIT
fail() { echo "cli_serve: FAIL: $*" >&2; [ -f "$tmp/log" ] && tail -20 "$tmp/log" >&2; exit 1; }

MODEL="$SRC/tests/data/stories260K/stories260K.bin"
TOK="$SRC/data/stories260K/tok512.bin"
"$STRATA" serve --help | grep -q -- "--api-key" || fail "--help lacks --api-key"
"$STRATA" serve --model "$MODEL" --tokenizer "$TOK" --port 0 --port-file "$tmp/port" \
    --api-key test-key --name stories260K >"$tmp/log" 2>&1 &
pid=$!
for _ in $(seq 1 100); do [ -s "$tmp/port" ] && break; sleep 0.1; done
[ -s "$tmp/port" ] || fail "the server did not start"
port=$(cat "$tmp/port")
base="http://127.0.0.1:$port"

curl -sf "$base/health" | grep -q ok || fail "/health"
curl -sf "$base/ready" | grep -q ready || fail "/ready"
code=$(curl -s -o /dev/null -w '%{http_code}' "$base/v1/models")
[ "$code" = 401 ] || fail "no key: status $code, want 401"

if [ -d "$SRC/tests/js/node_modules/openai" ] && command -v node >/dev/null; then
    out=$(node "$SRC/tests/js/openai_client.mjs" "$base/v1" stories260K test-key) || fail "openai client"
    echo "$out" | grep -q '"ok":true' || fail "openai client: $out"
else
    echo "cli_serve: SKIP openai client (run tools/npm_test_deps.sh)" >&2
    [ -n "${CI:-}" ] && fail "CI must run the openai client"
fi

m=$(curl -sf "$base/metrics") || fail "/metrics"
echo "$m" | grep -q '^strata_requests_total{status="200"}' || fail "metrics: no 200 count"
echo "$m" | grep -q '^strata_time_to_first_token_seconds_count' || fail "metrics: no TTFT histogram"
echo "$m" | grep -q '^strata_kv_blocks_free' || fail "metrics: no KV gauge"

kill -TERM "$pid"
for _ in $(seq 1 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
kill -0 "$pid" 2>/dev/null && fail "still running 10 s after SIGTERM"
wait "$pid" || fail "exit status $? after SIGTERM"
pid=
grep -q "stopped" "$tmp/log" || fail "no shutdown message"
echo "cli_serve: ok"
