#!/usr/bin/env bash
# cli_hub.sh — `strata hub` end to end, over a real loopback HTTP hub:
#  1. push / list / show / log / diff / tag / path with --json (checked by python's json);
#  2. `hub serve` on a free port, `hub pull` into another STRATA_HOME: byte-identical files;
#  3. a pull killed (kill -9) midway and run again completes without fetching finished
#     blobs again — proved by the server's request log (one GET per small blob over
#     both runs, a 206 range request continuing the big one);
#  4. hostile servers (a proxy in python): a blob with a flipped byte and a manifest
#     with a "../" path are refused, and nothing becomes visible;
#  5. push --to with a wrong API key is refused (401), with the right one recorded;
#  6. verify finds a flipped byte (exit 1); gc; usage errors exit 2.
# Usage: bash tests/cli_hub.sh <strata-binary> <build-dir>
set -euo pipefail
STRATA=${1:?usage: cli_hub.sh <strata-binary> <build-dir>}
PY=/usr/bin/python3
tmp=$(mktemp -d)
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  chmod -R u+w "$tmp" 2>/dev/null || true
  rm -rf "$tmp"
}
trap cleanup EXIT
fail() { echo "cli_hub: FAIL: $*" >&2; for f in "$tmp"/*.log; do [ -f "$f" ] && { echo "--- $f"; tail -20 "$f"; } >&2; done; exit 1; }
json() { $PY -c "import json,sys; d=json.load(sys.stdin); r=($1); print(r)"; }

if ! "$STRATA" hub --help >/dev/null 2>&1; then
  echo "cli_hub: SKIP: this strata binary has no 'hub' command registered" >&2
  exit 0
fi
A=$tmp/home-a B=$tmp/home-b C=$tmp/home-c D=$tmp/home-d

# ---- 1. local registry ----
m=$tmp/model
mkdir -p "$m/sub"
echo '{"model_type":"gpt2","n_layer":2,"n_embd":16}' >"$m/config.json"
head -c 10000 /dev/urandom >"$m/a_small1.bin"
head -c 20000 /dev/urandom >"$m/b_small2.bin"
head -c 8000000 /dev/urandom >"$m/model.safetensors"
printf -- '---\nlicense: mit\ndatasets:\n  - tinyshakespeare\nmetrics:\n  val_loss: 1.9\n---\n# Tiny\n' >"$m/README.md"
echo notes >"$m/sub/notes.txt"
r1=$(STRATA_HOME=$A "$STRATA" hub push "$m" --name tiny --tag v1 -m first --json | json 'd["revision"]') || fail "push"
[ ${#r1} -eq 64 ] || fail "push revision: $r1"
cp -r "$m" "$tmp/model2"
echo '{"model_type":"gpt2","n_layer":4,"n_embd":16}' >"$tmp/model2/config.json"
rm "$tmp/model2/sub/notes.txt"
echo new >"$tmp/model2/added.txt"
r2=$(STRATA_HOME=$A "$STRATA" hub push "$tmp/model2" --name tiny -m second --json | json 'd["revision"]') || fail "push 2"
got=$(STRATA_HOME=$A "$STRATA" hub list --json | json 'd[0]["name"], d[0]["revisions"], d[0]["latest"]')
[ "$got" = "('tiny', 2, '$r2')" ] || fail "list: $got"
got=$(STRATA_HOME=$A "$STRATA" hub log tiny --json | json '[x["revision"] for x in d] == ["'$r2'", "'$r1'"] and d[0]["parent"] == "'$r1'"')
[ "$got" = True ] || fail "log"
got=$(STRATA_HOME=$A "$STRATA" hub show tiny:v1 --json | json 'd["revision"], d["card"]["license"], d["card"]["metrics"]["val_loss"], sorted(d["tags"])')
[ "$got" = "('$r1', 'mit', '1.9', ['v1'])" ] || fail "show: $got"
STRATA_HOME=$A "$STRATA" hub show tiny | grep -q "license:    mit" || fail "show renders the card"
got=$(STRATA_HOME=$A "$STRATA" hub diff tiny:v1 tiny --json | json 'd["added"], d["removed"], [c["path"] for c in d["changed"]], d["config"]')
[ "$got" = "(['added.txt'], ['sub/notes.txt'], ['config.json'], {'n_layer': {'a': 2, 'b': 4}})" ] || fail "diff: $got"
STRATA_HOME=$A "$STRATA" hub tag "tiny@${r1:0:10}" prod >/dev/null || fail "tag by prefix"
p=$(STRATA_HOME=$A "$STRATA" hub path tiny:prod) || fail "path"
cmp "$p/model.safetensors" "$m/model.safetensors" || fail "materialized file differs"
set +e
STRATA_HOME=$A "$STRATA" hub show '../etc' >/dev/null 2>&1; [ $? -eq 1 ] || fail "bad ref must exit 1"
STRATA_HOME=$A "$STRATA" hub push "$m" >/dev/null 2>&1; [ $? -eq 2 ] || fail "push without --name must exit 2"
STRATA_HOME=$A "$STRATA" hub frobnicate >/dev/null 2>&1; [ $? -eq 2 ] || fail "unknown verb must exit 2"
set -e

# ---- 2. serve + pull: byte-identical ----
KEY=secret-key-123
STRATA_HOME=$A "$STRATA" hub serve --port 0 --api-key $KEY >"$tmp/serve.out" 2>"$tmp/serve.log" &
pids+=($!)
for _ in $(seq 100); do grep -q listening "$tmp/serve.out" 2>/dev/null && break; sleep 0.05; done
URL=$(sed -n 's/^listening on //p' "$tmp/serve.out")
[ -n "$URL" ] || fail "hub serve did not start"
STRATA_HOME=$B "$STRATA" hub pull "$URL" tiny:v1 >/dev/null || fail "pull tiny:v1"
pb=$(STRATA_HOME=$B "$STRATA" hub path tiny:v1)
for f in config.json a_small1.bin b_small2.bin model.safetensors README.md sub/notes.txt; do
  cmp "$pb/$f" "$m/$f" || fail "pulled $f differs"
done
got=$(STRATA_HOME=$B "$STRATA" hub show tiny:v1 --json | json 'd["revision"]')
[ "$got" = "$r1" ] || fail "pulled revision $got != $r1"
STRATA_HOME=$B "$STRATA" hub verify >/dev/null || fail "verify after pull"
# a second pull of the other revision fetches only what changed (config.json, added.txt)
got=$(STRATA_HOME=$B "$STRATA" hub pull "$URL" tiny --json | json 'd["blobs_fetched"]')
[ "$got" = 2 ] || fail "incremental pull fetched $got blobs, expected 2"
# HTTP details: ETag, Range, 416
bh=$(STRATA_HOME=$A "$STRATA" hub show tiny --json | json '[f["sha256"] for f in d["files"] if f["path"]=="model.safetensors"][0]')
hdr=$(curl -s -D - -o "$tmp/part" -H "Range: bytes=100-199" "$URL/v1/blobs/$bh")
echo "$hdr" | grep -q "^HTTP/1.1 206" || fail "range: no 206"
echo "$hdr" | grep -qi "^Content-Range: bytes 100-199/8000000" || fail "range: Content-Range"
echo "$hdr" | grep -qi "^ETag: \"$bh\"" || fail "ETag"
cmp "$tmp/part" <(tail -c +101 "$m/model.safetensors" | head -c 100) || fail "range bytes"
code=$(curl -s -o /dev/null -w '%{http_code}' -H "Range: bytes=8000000-" "$URL/v1/blobs/$bh")
[ "$code" = 416 ] || fail "unsatisfiable range gave $code"
code=$(curl -s -o /dev/null -w '%{http_code}' -I "$URL/v1/blobs/$bh")
[ "$code" = 200 ] || fail "HEAD gave $code"

# ---- 3. a pull killed midway resumes without re-fetching finished blobs ----
s1=$(STRATA_HOME=$A "$STRATA" hub show tiny --json | json '[f["sha256"] for f in d["files"] if f["path"]=="a_small1.bin"][0]')
s2=$(STRATA_HOME=$A "$STRATA" hub show tiny --json | json '[f["sha256"] for f in d["files"] if f["path"]=="b_small2.bin"][0]')
STRATA_HOME=$C "$STRATA" hub pull "$URL" tiny --limit-rate 1000000 >/dev/null 2>"$tmp/pull1.log" &
pp=$!
for _ in $(seq 200); do
  sz=$(stat -c %s "$C/hub/tmp/$bh.partial" 2>/dev/null || echo 0)
  [ "$sz" -gt 500000 ] && break
  sleep 0.05
done
kill -9 $pp; wait $pp 2>/dev/null || true
[ "$sz" -gt 0 ] && [ "$sz" -lt 8000000 ] || fail "the big blob was not partial when killed ($sz bytes)"
if STRATA_HOME=$C "$STRATA" hub show tiny >/dev/null 2>&1; then fail "a killed pull made the model visible"; fi
STRATA_HOME=$C "$STRATA" hub pull "$URL" tiny >/dev/null || fail "resumed pull"
pc=$(STRATA_HOME=$C "$STRATA" hub path tiny)
cmp "$pc/model.safetensors" "$tmp/model2/model.safetensors" || fail "resumed file differs"
n1=$(grep -c "GET /v1/blobs/$s1 " "$tmp/serve.log" || true)
n2=$(grep -c "GET /v1/blobs/$s2 " "$tmp/serve.log" || true)
# B pulled each small blob once; C once over both runs
[ "$n1" = 2 ] && [ "$n2" = 2 ] || fail "small blobs fetched $n1/$n2 times in total (expected 2 each: one for B, one for C)"
off=$(sed -n "s|.*GET /v1/blobs/$bh 206 bytes \([0-9]*\)-7999999/8000000|\1|p" "$tmp/serve.log" | head -1)
[ -n "$off" ] && [ "$off" -ge "$sz" ] || fail "no range request continuing the partial blob (offset '$off', partial was $sz)"
STRATA_HOME=$C "$STRATA" hub verify >/dev/null || fail "verify after resume"

# ---- 4. hostile servers ----
cat >"$tmp/evil.py" <<'EOF'
import hashlib, http.server, json, sys, urllib.request
up, mode = sys.argv[1], sys.argv[2]
class H(http.server.BaseHTTPRequestHandler):
    def log_message(self, *a): pass
    def do_GET(self):
        if mode == "badpath" and "/revisions/" in self.path:
            body = self.server.manifest
        elif mode == "badpath" and "/tags/" in self.path:
            body = json.dumps({"revision": self.server.rev}).encode()
        else:
            body = urllib.request.urlopen(up + self.path).read()
            if mode == "flip" and self.path.startswith("/v1/blobs/") and len(body) > 100:
                body = body[:50] + bytes([body[50] ^ 1]) + body[51:]
        self.send_response(200); self.send_header("Content-Length", str(len(body))); self.end_headers()
        self.wfile.write(body)
s = http.server.HTTPServer(("127.0.0.1", 0), H)
m = {"format": "strata-manifest", "version": 1, "kind": "directory", "name": "tiny", "parent": None,
     "author": "x", "message": "", "time": "t",
     "files": [{"path": "../../evil", "sha256": "ab" * 32, "size": 3}]}
s.manifest = json.dumps(m, sort_keys=True, separators=(",", ":")).encode()
s.rev = hashlib.sha256(s.manifest).hexdigest()
print(s.server_address[1], flush=True)
s.serve_forever()
EOF
for mode in flip badpath; do
  $PY "$tmp/evil.py" "$URL" $mode >"$tmp/evil-$mode.out" 2>/dev/null &
  pids+=($!)
  for _ in $(seq 100); do [ -s "$tmp/evil-$mode.out" ] && break; sleep 0.05; done
  EP=$(head -1 "$tmp/evil-$mode.out")
  set +e
  STRATA_HOME=$D "$STRATA" hub pull "http://127.0.0.1:$EP" tiny:v1 >/dev/null 2>"$tmp/evil-$mode.err"
  rc=$?
  set -e
  [ $rc = 1 ] || fail "hostile server ($mode): pull exited $rc"
  case $mode in
    flip) grep -q "SHA-256 of the bytes is" "$tmp/evil-$mode.err" || fail "flip: $(cat "$tmp/evil-$mode.err")" ;;
    badpath) grep -q "unsafe path" "$tmp/evil-$mode.err" || fail "badpath: $(cat "$tmp/evil-$mode.err")" ;;
  esac
  got=$(STRATA_HOME=$D "$STRATA" hub list --json | json 'len(d)')
  [ "$got" = 0 ] || fail "hostile server ($mode): a model became visible"
done
[ ! -e "$D/hub/tmp/$s1.partial" ] || fail "the partial file of a refused blob was kept for resume"
[ ! -e "$tmp/evil" ] && [ ! -e "$D/evil" ] || fail "path traversal wrote a file"

# ---- 5. uploads need the key ----
mkdir -p "$tmp/up" && echo "uploaded" >"$tmp/up/w.txt"
set +e
STRATA_HOME=$D "$STRATA" hub push "$tmp/up" --name up --to "$URL" --api-key wrong >/dev/null 2>"$tmp/up.err"
rc=$?
set -e
[ $rc = 1 ] && grep -q 401 "$tmp/up.err" || fail "wrong key: rc $rc $(cat "$tmp/up.err")"
STRATA_HOME=$D "$STRATA" hub push "$tmp/up" --name up --tag t1 --to "$URL" --api-key $KEY >/dev/null || fail "push --to"
got=$(STRATA_HOME=$A "$STRATA" hub show up:t1 --json | json 'd["files"][0]["path"]')
[ "$got" = w.txt ] || fail "uploaded model: $got"
code=$(curl -s -o /dev/null -w '%{http_code}' -X PUT --data-binary "xyz" -H "Authorization: Bearer $KEY" \
  "$URL/v1/blobs/ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad")
[ "$code" = 400 ] || fail "PUT of bytes that do not match the hash gave $code"

# ---- 6. verify / gc ----
blob=$A/hub/blobs/sha256/${bh:0:2}/$bh
chmod u+w "$blob"
$PY -c "import sys; f=open(sys.argv[1],'r+b'); f.seek(12345); b=f.read(1); f.seek(12345); f.write(bytes([b[0]^1]))" "$blob"
set +e
out=$(STRATA_HOME=$A "$STRATA" hub verify --json)
rc=$?
set -e
[ $rc = 1 ] || fail "verify of a flipped byte exited $rc"
echo "$out" | json 'd["problems"][0]["detail"]' | grep -q "$bh" || fail "verify did not name the blob"
STRATA_HOME=$A "$STRATA" hub rm tiny >/dev/null || fail "rm"
got=$(STRATA_HOME=$A "$STRATA" hub gc --json | json 'd["blobs_removed"] >= 6')
[ "$got" = True ] || fail "gc after rm"
echo "cli_hub: ok"
