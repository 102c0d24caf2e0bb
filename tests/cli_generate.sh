#!/usr/bin/env bash
# cli_generate.sh — the acceptance test of the inference engine (issue 5):
# for each prompt of tests/data/stories260K/reference_greedy.jsonl (llama2.c
# run.c's own greedy output, see that folder's README), `strata generate
# --model stories260K.bin --tokenizer tok512.bin --temperature 0 -n 200
# --prompt P` must print exactly run.c's stdout, byte for byte. Around it:
# --json is valid and carries the same text, --max-tokens counts new tokens,
# a stop string cuts the text before it, a fixed seed reproduces a sampled
# run, `strata eval` gives a finite perplexity, and truncated / hostile
# llama2.c files fail with a clear message (exit 1, no crash).
# Usage: bash tests/cli_generate.sh <strata-binary> <build-dir>
set -euo pipefail
STRATA=${1:?usage: cli_generate.sh <strata-binary> <build-dir>}
SRC=$(cd "$(dirname "$0")/.." && pwd)
PY=/usr/bin/python3
MODEL=$SRC/tests/data/stories260K/stories260K.bin
TOK=$SRC/data/stories260K/tok512.bin
REF=$SRC/tests/data/stories260K/reference_greedy.jsonl
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
fail() { echo "cli_generate: FAIL: $*" >&2; exit 1; }

# 1. golden greedy text against llama2.c
$PY - "$STRATA" "$MODEL" "$TOK" "$REF" <<'PYEOF' || fail "greedy output differs from llama2.c"
import json, subprocess, sys
strata, model, tok, ref = sys.argv[1:5]
for line in open(ref, encoding="utf-8"):
    r = json.loads(line)
    out = subprocess.run([strata, "generate", "--model", model, "--tokenizer", tok,
                          "--temperature", "0", "-n", str(r["steps"]), "--prompt", r["prompt"]],
                         capture_output=True, check=True).stdout.decode("utf-8")
    if out != r["output"]:
        n = next((i for i, (a, b) in enumerate(zip(out, r["output"])) if a != b),
                 min(len(out), len(r["output"])))
        sys.exit(f"prompt {r['prompt']!r}: differs at char {n}: "
                 f"got {out[n:n+40]!r}, llama2.c {r['output'][n:n+40]!r}")
    print(f"cli_generate: {r['prompt']!r}: identical to llama2.c ({len(out)} bytes)")
PYEOF

# 1b. the same weights re-laid as a version-1 ("ak42") checkpoint give the same text
$PY - "$MODEL" "$tmp/v1.bin" <<'PYEOF' || fail "writing the version-1 file"
import struct, sys
data = open(sys.argv[1], "rb").read()
dim, hid, L, H, KV, V, S = struct.unpack("<7i", data[:28])
kvd = dim // H * KV
sizes = [("emb", V * dim), ("rms_att", L * dim), ("wq", L * dim * dim), ("wk", L * kvd * dim),
         ("wv", L * kvd * dim), ("wo", L * dim * dim), ("rms_ffn", L * dim), ("w1", L * hid * dim),
         ("w2", L * dim * hid), ("w3", L * hid * dim), ("rms_final", dim)]
off, part = 28, {}
for name, n in sizes:
    part[name] = data[off:off + 4 * n]
    off += 4 * n
hdr = struct.pack("<Ii7iB", 0x616b3432, 1, dim, hid, L, H, KV, abs(V), S, 1)
out = hdr + b"\0" * (256 - len(hdr))
for name in ("rms_att", "rms_ffn", "rms_final", "emb", "wq", "wk", "wv", "wo", "w1", "w2", "w3"):
    out += part[name]
open(sys.argv[2], "wb").write(out)
PYEOF
want=$($PY -c "import json,sys; print(json.loads(open('$REF').readline())['output'], end='')")
got=$("$STRATA" generate --model "$tmp/v1.bin" --tokenizer "$TOK" --temperature 0 -n 200 --prompt "Once upon a time") \
  || fail "version-1 file: exit $?"
[ "$got" = "${want%$'\n'}" ] || fail "version-1 file: the text differs from the legacy file's"
echo "cli_generate: version-1 checkpoint gives the same text"

# 2. --json: same text, counts, finish reason
$PY - "$STRATA" "$MODEL" "$TOK" "$REF" <<'PYEOF' || fail "--json"
import json, subprocess, sys
strata, model, tok, ref = sys.argv[1:5]
r = json.loads(open(ref, encoding="utf-8").readline())
j = json.loads(subprocess.run([strata, "generate", "--model", model, "--tokenizer", tok,
                               "--temperature", "0", "-n", "200", "--prompt", r["prompt"],
                               "--json"], capture_output=True, check=True).stdout)
assert j["prompt"] + j["text"] + "\n" == r["output"], j
assert j["prompt_tokens"] == len(r["prompt_ids"]), j
assert j["generated_tokens"] == 200 - len(r["prompt_ids"]) + 1, j
assert j["finish_reason"] == "length", j
# --max-tokens counts new tokens
j = json.loads(subprocess.run([strata, "generate", "--model", model, "--tokenizer", tok,
                               "--temperature", "0", "--max-tokens", "7", "--prompt", r["prompt"],
                               "--json"], capture_output=True, check=True).stdout)
assert j["generated_tokens"] == 7, j
assert r["output"].startswith(j["prompt"] + j["text"]), j
# a stop string: the text ends right before its first occurrence
full = r["output"][len(r["prompt"]):]
stop = "red ball"
j = json.loads(subprocess.run([strata, "generate", "--model", model, "--tokenizer", tok,
                               "--temperature", "0", "-n", "200", "--prompt", r["prompt"],
                               "--stop", stop, "--json"], capture_output=True, check=True).stdout)
assert j["finish_reason"] == "stop" and j["text"] == full[:full.index(stop)], j
# sampling: a seed reproduces the run, another seed differs
def run(seed):
    return json.loads(subprocess.run([strata, "generate", "--model", model, "--tokenizer", tok,
                                      "--temperature", "1", "--top-p", "0.9", "--seed", str(seed),
                                      "-n", "120", "--json"],
                                     capture_output=True, check=True).stdout)["text"]
a, b, c = run(42), run(42), run(43)
assert a == b and a != c, (a, c)
print("cli_generate: --json, --max-tokens, --stop, --seed ok")
PYEOF

# 3. eval: finite perplexity on the reference text, well below uniform (512)
$PY -c "import json,sys; [sys.stdout.write(json.loads(l)['output']) for l in open('$REF')]" > "$tmp/text.txt"
got=$("$STRATA" eval --model "$MODEL" --tokenizer "$TOK" --data "$tmp/text.txt" --json) || fail "eval exited $?"
$PY -c "import json,sys; j=json.loads(sys.argv[1]); assert 1 < j['perplexity'] < 20 and j['tokens'] > 500, j" "$got" \
  || fail "eval: $got"

# 4. hostile llama2.c files: clear errors, exit 1
head -c 100000 "$MODEL" > "$tmp/trunc.bin"
$PY - "$MODEL" "$tmp" <<'PYEOF'
import struct, sys
src, tmp = sys.argv[1], sys.argv[2]
data = open(src, "rb").read()
h = list(struct.unpack("<7i", data[:28]))
def put(name, hdr, body=data[28:]):
    open(f"{tmp}/{name}", "wb").write(struct.pack("<7i", *hdr) + body)
put("huge.bin", [h[0], h[1], 4000, h[3], h[4], h[5], h[6]])            # layers past the file
put("zero.bin", [0] + h[1:])                                          # dim 0
put("overflow.bin", [65536, 1 << 20, 4096, 1024, 1024, -(1 << 22), 1 << 22])
put("heads.bin", [h[0], h[1], h[2], 7, h[4], h[5], h[6]])             # dim % heads
open(f"{tmp}/v2.bin", "wb").write(struct.pack("<Ii", 0x616b3432, 2) + data[:300])
open(f"{tmp}/tiny.bin", "wb").write(b"\x01\x02")
PYEOF
for f in trunc huge zero overflow heads v2 tiny; do
  set +e
  msg=$("$STRATA" generate --model "$tmp/$f.bin" --tokenizer "$TOK" -n 5 2>&1 >/dev/null)
  rc=$?
  set -e
  [ "$rc" = 1 ] || fail "$f.bin: exit $rc (want 1): $msg"
  case "$msg" in *"$f.bin"*) ;; *) fail "$f.bin: the message does not name the file: $msg" ;; esac
done
"$STRATA" generate --model "$tmp/nope.bin" -n 5 >/dev/null 2>&1 && fail "missing file accepted"
rc=0; "$STRATA" generate --prompt x >/dev/null 2>&1 || rc=$?
[ "$rc" = 2 ] || fail "usage error is exit $rc, not 2"
"$STRATA" generate --help | grep -q -- "--top-p" || fail "--help"
echo "cli_generate: all ok"
