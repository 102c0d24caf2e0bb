#!/usr/bin/env bash
# The last step of `make demo`: serves the demo model with `strata serve`,
# asks it one chat question through curl (OpenAI's chat API), prints the
# answer and stops the server with SIGTERM (a graceful drain).
# Usage: tools/demo_serve.sh <strata-binary> <model-dir>
set -euo pipefail
STRATA=${1:?usage: demo_serve.sh <strata-binary> <model-dir>}
MODEL=${2:?usage: demo_serve.sh <strata-binary> <model-dir>}
tmp=$(mktemp -d)
pid=
cleanup() { [ -n "$pid" ] && kill "$pid" 2>/dev/null || true; rm -rf "$tmp"; }
trap cleanup EXIT
"$STRATA" serve --model "$MODEL" --name demo --port 0 --port-file "$tmp/port" 2>"$tmp/log" &
pid=$!
for _ in $(seq 1 100); do [ -s "$tmp/port" ] && break; sleep 0.1; done
[ -s "$tmp/port" ] || { cat "$tmp/log" >&2; echo "demo: the server did not start" >&2; exit 1; }
url="http://127.0.0.1:$(cat "$tmp/port")/v1/chat/completions"
body='{"model": "demo", "messages": [{"role": "user", "content": "What news from Verona?"}],
       "max_tokens": 200, "temperature": 0.8, "seed": 1}'
echo "demo: POST $url"
echo "$body"
resp=$(curl -sS -H 'Content-Type: application/json' -d "$body" "$url")
echo "demo: the answer:"
/usr/bin/python3 -c 'import json,sys; r=json.load(sys.stdin); print(r["choices"][0]["message"]["content"]); print("usage:", r["usage"])' <<<"$resp"
kill -TERM "$pid"
wait "$pid"
pid=
