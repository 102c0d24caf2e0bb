#!/usr/bin/env bash
# cli_mcp.sh — `strata mcp` end to end. A RAG index is built over three
# small files with `strata rag index`; then the Model Context Protocol's own
# TypeScript SDK client (npm @modelcontextprotocol/sdk, installed into
# tests/js by tools/npm_test_deps.sh; tests/js/mcp_client.mjs) starts the
# server over stdio, lists the tools, generates with llama2.c's stories260K,
# calls rag_search (the file holding the query's words must rank first),
# lists and reads the documents as resources, and sends malformed JSON-RPC
# on a raw pipe (every line gets its error code; the server exits 0 at end
# of input). Without node, the raw-pipe part runs here with python3.
# Usage: bash tests/cli_mcp.sh <strata-binary> <build-dir>
set -euo pipefail
STRATA=${1:?usage: cli_mcp.sh <strata-binary> <build-dir>}
SRC=$(cd "$(dirname "$0")/.." && pwd)
PY=/usr/bin/python3
MODEL=$SRC/tests/data/stories260K/stories260K.bin
TOK=$SRC/data/stories260K/tok512.bin
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
fail() { echo "cli_mcp: FAIL: $*" >&2; exit 1; }
export STRATA_HOME=$tmp/home   # the index lives here, not in the shared test home

"$STRATA" mcp --help | grep -q "rag_search" || fail "--help lacks the tools"
"$STRATA" mcp --help | grep -q "mcpServers" || fail "--help lacks the host configuration"

# 1. a small index (the RAG command is another part of issue 9)
index=
mkdir -p "$tmp/docs"
printf '# Tides\n\nThe moon pulls the oceans; high tide follows the moon across the sky.\n' >"$tmp/docs/tides.md"
printf 'Sourdough bread rises with wild yeast and a long, slow fermentation.\n' >"$tmp/docs/bread.txt"
printf 'Glaciers carve U-shaped valleys as the ice grinds the rock beneath it.\n' >"$tmp/docs/glaciers.txt"
if "$STRATA" rag --help >/dev/null 2>&1; then
    "$STRATA" rag index "$tmp/docs" --index testdocs >"$tmp/rag.log" 2>&1 ||
        fail "strata rag index: $(tail -5 "$tmp/rag.log")"
    index=testdocs
else
    echo "cli_mcp: SKIP rag_search and resources: 'strata rag' is not built in this binary" >&2
    [ -n "${CI:-}" ] && fail "CI must run rag_search through MCP"
fi

# 2. the real SDK client
if [ -d "$SRC/tests/js/node_modules/@modelcontextprotocol/sdk" ] && command -v node >/dev/null; then
    args=("$STRATA" "$MODEL" "$TOK")
    [ -n "$index" ] && args+=("$index" glaciers.txt "how do glaciers carve valleys in rock")
    out=$(node "$SRC/tests/js/mcp_client.mjs" "${args[@]}" 2>"$tmp/client.log") ||
        fail "mcp client: $(tail -20 "$tmp/client.log")"
    echo "$out" | grep -q '"ok":true' || fail "mcp client: $out"
    echo "cli_mcp: SDK client: $out"
else
    echo "cli_mcp: SKIP the npm MCP client (run tools/npm_test_deps.sh)" >&2
    [ -n "${CI:-}" ] && fail "CI must run the MCP SDK client"
fi

# 3. raw JSON-RPC without node: codes, ids, silence for notifications
printf '%s\n' '{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2024-11-05","capabilities":{},"clientInfo":{"name":"sh","version":"0"}}}' \
    '{"jsonrpc":"2.0","method":"notifications/initialized"}' \
    '{oops' \
    '{"jsonrpc":"2.0","id":2,"method":"tools/call","params":{"name":"generate","arguments":{"prompt":"Once upon a time","max_tokens":8,"temperature":0}}}' \
    '{"jsonrpc":"2.0","id":3,"method":"resources/read","params":{"uri":"file:///etc/passwd"}}' \
    '{"jsonrpc":"2.0","id":4,"method":"nope"}' |
    "$STRATA" mcp --model "$MODEL" --tokenizer "$TOK" >"$tmp/raw.out" 2>"$tmp/raw.err" ||
    fail "strata mcp exited $?: $(cat "$tmp/raw.err")"
$PY - "$tmp/raw.out" <<'PYEOF' || fail "raw replies: $(cat "$tmp/raw.out")"
import json, sys
r = [json.loads(l) for l in open(sys.argv[1], encoding="utf-8")]
assert len(r) == 5, len(r)
assert r[0]["id"] == 1 and r[0]["result"]["protocolVersion"] == "2024-11-05", r[0]
assert r[1]["id"] is None and r[1]["error"]["code"] == -32700, r[1]
assert r[2]["id"] == 2 and not r[2]["result"].get("isError"), r[2]
assert r[2]["result"]["content"][0]["text"].startswith(", there was a little girl"), r[2]
assert "structuredContent" not in r[2]["result"], "2024-11-05 has no structuredContent"
assert r[3]["id"] == 3 and r[3]["error"]["code"] == -32002, r[3]
assert r[4]["id"] == 4 and r[4]["error"]["code"] == -32601, r[4]
PYEOF
grep -q "serving on stdio" "$tmp/raw.err" || fail "no banner on stderr"
echo "cli_mcp: ok"
