#!/usr/bin/env bash
# cli_ui.sh — the tracking dashboard end to end. A real short training run
# (strata train, shakespeare-char-baby, 20 steps, evaluation every 4) is
# logged into a fresh store through `strata runs import` with its model as
# an artifact; `strata ui` serves it on a free port; the run table, the run
# page, the compare page and the JSON API are fetched with curl and checked
# (the val_loss <polyline> has as many points as the metric has rows, HTML
# from the store is escaped, a bad filter is a 400 naming the column); then
# headless Chromium screenshots the run page and the PNG must show the
# curve (non-trivial image holding the chart's line colour). Without
# chromium the screenshot part is skipped with a note.
# Usage: bash tests/cli_ui.sh <strata-binary> <build-dir>
# SHOT=path keeps a copy of the screenshot (docs/img/ui-run.png was made so).
set -euo pipefail
STRATA=${1:?usage: cli_ui.sh <strata-binary> <build-dir>}
SRC=$(cd "$(dirname "$0")/.." && pwd)
PY=/usr/bin/python3
tmp=$(mktemp -d)
pid=""
cleanup() { [ -n "$pid" ] && kill "$pid" 2>/dev/null; wait 2>/dev/null; rm -rf "$tmp"; }
trap cleanup EXIT
export STRATA_HOME="$tmp/home"
unset STRATA_TRACKING_URI
T=(--tracking "sqlite://$tmp/t.db")
fail() { echo "cli_ui: FAIL: $*" >&2; exit 1; }

# 1. A real training run, logged.
"$STRATA" train --config shakespeare-char-baby --data "$SRC/data/tinyshakespeare.txt" --steps 20 \
    --eval-every 4 --eval-iters 2 --out "$tmp/run" >/dev/null 2>"$tmp/train.log" ||
    { cat "$tmp/train.log" >&2; fail "strata train exited $?"; }
n_rows=$(grep -c '"val_loss"' "$tmp/run/metrics.jsonl")
[ "$n_rows" -ge 5 ] || fail "train wrote only $n_rows evaluations"
id=$("$STRATA" runs import "$tmp/run/metrics.jsonl" "${T[@]}" --experiment ui-test \
    --name 'baby <script>alert(1)</script>' --param config=shakespeare-char-baby --param n_layer=4 \
    --artifact "$tmp/run/model.safetensors" 2>/dev/null) || fail "runs import exited $?"
id2=$("$STRATA" runs import "$tmp/run/metrics.jsonl" "${T[@]}" --experiment ui-test --name twin \
    --param n_layer=6 2>/dev/null) || fail "second import exited $?"

# 2. The server on a free port; its first stdout line is the URL.
"$STRATA" ui "${T[@]}" --port 0 >"$tmp/ui.out" 2>"$tmp/ui.err" &
pid=$!
for _ in $(seq 100); do grep -q '^strata ui: http' "$tmp/ui.out" 2>/dev/null && break; sleep 0.1; done
url=$(sed -n 's/^strata ui: \(http[^ ]*\)$/\1/p' "$tmp/ui.out" | head -1)
[ -n "$url" ] || { cat "$tmp/ui.err" >&2; fail "strata ui printed no URL"; }
get() { curl -sS --max-time 20 -o "$2" -w '%{http_code}' "$url${1#/}"; }

[ "$(get / "$tmp/index.html")" = 200 ] || fail "GET / not 200"
grep -q "/run/$id" "$tmp/index.html" || fail "run table lacks a link to the run"
grep -q '&lt;script&gt;alert(1)&lt;/script&gt;' "$tmp/index.html" || fail "run name not escaped in the table"
grep -q '<script>' "$tmp/index.html" && fail "raw <script> in the table"
[ "$(get "/?sort=-metrics.val_loss&filter=params.n_layer%20%3D%206" "$tmp/f.html")" = 200 ] || fail "filtered table not 200"
grep -q "/run/$id2" "$tmp/f.html" && ! grep -q "/run/$id\"" "$tmp/f.html" || fail "filter params.n_layer = 6 wrong"
[ "$(get "/?filter=metrics.val_loss%20%3C" "$tmp/bad.html")" = 400 ] || fail "bad filter not 400"
grep -q "column 19" "$tmp/bad.html" || fail "bad filter page does not name the column"

[ "$(get "/run/$id" "$tmp/run.html")" = 200 ] || fail "GET /run/ID not 200"
$PY - "$tmp/run.html" "$n_rows" <<'P' || fail "run page chart"
import re, sys
html = open(sys.argv[1]).read(); n = int(sys.argv[2])
charts = re.findall(r'<svg class="chart"[^>]*data-metric="([^"]*)"', html)
for k in ("train_loss", "val_loss", "lr", "tokens_per_s"): assert k in charts, (k, charts)
svg = html[html.index('data-metric="val_loss"'):]
svg = svg[:svg.index("</svg>")]
m = re.search(r'<polyline[^>]*data-points="(\d+)"[^>]*points="([^"]*)"', svg)
assert m, "no polyline in the val_loss chart"
pts = m.group(2).split()
assert int(m.group(1)) == n and len(pts) == n, (m.group(1), len(pts), n)
xs = [float(p.split(",")[0]) for p in pts]
assert xs == sorted(xs) and len(set(xs)) == n, xs           # one point per step, left to right
assert len(re.findall(r"<text[^>]*>[0-9.]+</text>", svg)) >= 6, "too few tick labels"
assert "&lt;script&gt;" in html and "<script>" not in html
P
[ "$(get "/compare?ids=$id,$id2" "$tmp/cmp.html")" = 200 ] || fail "compare not 200"
$PY - "$tmp/cmp.html" <<'P' || fail "compare page"
import re, sys
html = open(sys.argv[1]).read()
svg = html[html.index('data-metric="val_loss"'):]; svg = svg[:svg.index("</svg>")]
assert len(re.findall("<polyline", svg)) == 2, "compare: want two curves"
assert 'class="diff"' in html, "compare: n_layer difference not marked"
P
[ "$(get "/api/runs/$id/metrics?key=val_loss" "$tmp/m.json")" = 200 ] || fail "metrics API not 200"
$PY - "$tmp/m.json" "$tmp/run/metrics.jsonl" <<'P' || fail "metrics API"
import json, sys
m = json.load(open(sys.argv[1]))["val_loss"]
ref = [json.loads(l) for l in open(sys.argv[2]) if l.strip()]
assert m["steps"] == [r["step"] for r in ref], m["steps"]
assert m["values"] == [r["val_loss"] for r in ref], (m["values"], ref)
P
[ "$(get "/api/runs?filter=params.n_layer%20%3D%204" "$tmp/l.json")" = 200 ] || fail "runs API"
$PY -c 'import json,sys; l=json.load(open(sys.argv[1])); assert len(l)==1 and l[0]["artifacts"][0]["name"]=="model.safetensors", l' \
    "$tmp/l.json" || fail "runs API content"
[ "$(get /run/0000 "$tmp/404.html")" = 404 ] || fail "unknown run not 404"

# 3. Headless Chromium draws the run page.
chrome=$(command -v chromium || command -v chromium-browser || true)
if [ -z "$chrome" ]; then
    echo "cli_ui: chromium not installed: screenshot check skipped (apt-get install chromium)"
else
    timeout 90 "$chrome" --headless --no-sandbox --disable-gpu --disable-dev-shm-usage --hide-scrollbars \
        --user-data-dir="$tmp/chrome" --window-size=1000,1300 --screenshot="$tmp/run.png" "${url}run/$id" \
        >/dev/null 2>"$tmp/chrome.log" || { tail -5 "$tmp/chrome.log" >&2; fail "chromium exited $?"; }
    $PY - "$tmp/run.png" <<'P' || fail "screenshot does not show the chart"
import struct, sys, zlib
b = open(sys.argv[1], "rb").read()
assert b[:8] == b"\x89PNG\r\n\x1a\n", "not a PNG"
pos, idat, w = 8, b"", 0
while pos < len(b):
    n, typ = struct.unpack(">I4s", b[pos:pos + 8]); data = b[pos + 8:pos + 8 + n]; pos += 12 + n
    if typ == b"IHDR": w, h, depth, ctype = struct.unpack(">IIBB", data[:10])
    elif typ == b"IDAT": idat += data
assert depth == 8 and ctype in (2, 6), (depth, ctype)
bpp = 3 if ctype == 2 else 4
raw = zlib.decompress(idat); stride = w * bpp; prev = bytearray(stride); rows = []; i = 0
for y in range(h):
    f = raw[i]; line = bytearray(raw[i + 1:i + 1 + stride]); i += 1 + stride
    for x in range(stride):
        a = line[x - bpp] if x >= bpp else 0; up = prev[x]; c = prev[x - bpp] if x >= bpp else 0
        if f == 1: line[x] = (line[x] + a) & 255
        elif f == 2: line[x] = (line[x] + up) & 255
        elif f == 3: line[x] = (line[x] + (a + up) // 2) & 255
        elif f == 4:
            p = a + up - c; pa, pb, pc = abs(p - a), abs(p - up), abs(p - c)
            line[x] = (line[x] + (a if pa <= pb and pa <= pc else up if pb <= pc else c)) & 255
    rows.append(line); prev = line
blue = sum(1 for r in rows for x in range(0, stride, bpp) if abs(r[x] - 0x1f) < 40 and abs(r[x+1] - 0x77) < 40 and abs(r[x+2] - 0xb4) < 40)
colours = len({bytes(r[x:x + 3]) for r in rows[::7] for x in range(0, stride, bpp * 7)})
print(f"cli_ui: screenshot {w}x{h}, {blue} curve-coloured pixels, {colours} colours sampled")
assert len(b) > 20000 and colours > 20 and blue > 300, (len(b), colours, blue)
P
    [ -n "${SHOT:-}" ] && cp "$tmp/run.png" "$SHOT"
fi
kill -TERM "$pid"
wait "$pid" || fail "strata ui exited $? on SIGTERM"
pid=""
echo "cli_ui: ok"
