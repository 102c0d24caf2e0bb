#!/usr/bin/env bash
# cli_chat.sh — `strata chat` driven through a pipe (no terminal) with
# llama2.c's stories260K at temperature 0: two user messages give the same
# output on every run and with --message instead of stdin; the printed
# answers are exactly the transcript's (/save, crash-safe JSON) and --json's;
# /system and /reset act on the transcript; an unknown command and an
# overlong line fail the run (exit 1) without stopping the others; bad usage
# exits 2.
# Usage: bash tests/cli_chat.sh <strata-binary> <build-dir>
set -euo pipefail
STRATA=${1:?usage: cli_chat.sh <strata-binary> <build-dir>}
SRC=$(cd "$(dirname "$0")/.." && pwd)
PY=/usr/bin/python3
MODEL=$SRC/tests/data/stories260K/stories260K.bin
TOK=$SRC/data/stories260K/tok512.bin
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
fail() { echo "cli_chat: FAIL: $*" >&2; exit 1; }
chat() { "$STRATA" chat --model "$MODEL" --tokenizer "$TOK" --temperature 0 -n 40 "$@"; }

"$STRATA" chat --help | grep -q -- "/save FILE" || fail "--help lacks /save"
"$STRATA" chat --help | grep -q -- "default 256" || fail "--help lacks the defaults"
set +e
"$STRATA" chat >/dev/null 2>&1; rc=$?
set -e
[ "$rc" = 2 ] || fail "no --model: exit $rc, want 2"

# 1. two messages, twice: the same bytes (greedy); /save writes the transcript
printf 'Hello!\nTell me about the dog.\n/save %s\n' "$tmp/t1.json" | chat >"$tmp/out1" 2>"$tmp/err1" ||
    fail "chat failed: $(cat "$tmp/err1")"
printf 'Hello!\nTell me about the dog.\n' | chat >"$tmp/out2" 2>/dev/null || fail "second run"
[ -s "$tmp/out1" ] || fail "no answer printed"
cmp -s "$tmp/out1" "$tmp/out2" || fail "two greedy runs differ"
chat --message 'Hello!' --message 'Tell me about the dog.' >"$tmp/out3" 2>/dev/null || fail "--message"
cmp -s "$tmp/out1" "$tmp/out3" || fail "--message differs from piped input"
grep -q "saved the transcript" "$tmp/err1" || fail "no /save notice"
chat --json --message 'Hello!' --message 'Tell me about the dog.' >"$tmp/t2.json" 2>/dev/null || fail "--json"

$PY - "$tmp/t1.json" "$tmp/t2.json" "$tmp/out1" <<'PYEOF' || fail "transcript check"
import json, sys
saved, printed_json, out = sys.argv[1:4]
t = json.load(open(saved, encoding="utf-8"))
assert t["format"] == "strata-chat" and t["version"] == 1, t
assert t["template"] == "llama-2", t["template"]
roles = [m["role"] for m in t["messages"]]
assert roles == ["user", "assistant", "user", "assistant"], roles
assert t["messages"][0]["content"] == "Hello!"
a1, a2 = t["messages"][1]["content"], t["messages"][3]["content"]
assert a1 and a2, "empty answers"
printed = open(out, encoding="utf-8").read()
assert printed == a1 + "\n" + a2 + "\n", (printed, a1, a2)
j = json.load(open(printed_json, encoding="utf-8"))
assert j["messages"] == t["messages"], "--json differs from /save"
print(f"cli_chat: answers {len(a1)} and {len(a2)} bytes, transcript consistent")
PYEOF

# 2. /system, /reset, // escapes, an unknown command (the run goes on, exit 1)
set +e
printf '/system Be kind.\nHi\n/reset\n//slash\n/bogus\nLast\n/save %s\n' "$tmp/t3.json" |
    chat >"$tmp/out4" 2>"$tmp/err4"
rc=$?
set -e
[ "$rc" = 1 ] || fail "unknown command: exit $rc, want 1"
grep -q "unknown command /bogus" "$tmp/err4" || fail "no message for /bogus"
$PY - "$tmp/t3.json" <<'PYEOF' || fail "/system + /reset transcript"
import json, sys
t = json.load(open(sys.argv[1], encoding="utf-8"))
msgs = [(m["role"], m["content"]) for m in t["messages"]]
assert msgs[0] == ("system", "Be kind."), msgs
assert [m[0] for m in msgs] == ["system", "user", "assistant", "user", "assistant"], msgs
assert msgs[1][1] == "/slash" and msgs[3][1] == "Last", msgs
PYEOF

# 3. an overlong line is skipped with a message; the next one is answered
set +e
{ head -c 1100000 /dev/zero | tr '\0' 'a'; printf '\nOk\n'; } | chat >"$tmp/out5" 2>"$tmp/err5"
rc=$?
set -e
[ "$rc" = 1 ] || fail "overlong line: exit $rc, want 1"
grep -q "skipped" "$tmp/err5" || fail "no message for the overlong line"
[ -s "$tmp/out5" ] || fail "the line after the overlong one got no answer"

# 4. /save to a folder that does not exist: a clear error, no crash
set +e
printf '/save /nonexistent-dir/t.json\n' | chat >/dev/null 2>"$tmp/err6"
rc=$?
set -e
[ "$rc" = 1 ] || fail "/save to a missing folder: exit $rc"
grep -q "nonexistent-dir" "$tmp/err6" || fail "the /save error does not name the file"
echo "cli_chat: ok"
