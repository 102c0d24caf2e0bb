#!/usr/bin/env bash
# cli_vec.sh — `strata vec build|search|info` end to end: vectors written
# as .npy and .fvecs by NumPy, an HNSW and a flat index built from them,
# searches whose ids (.ivecs) are checked against NumPy's brute force
# (flat: exact; HNSW: recall@10 >= 0.95 reported by --gt and recomputed
# here), --json is valid JSON with the documented keys, info describes the
# index, hostile inputs (a truncated index, a ragged .fvecs, a float64
# .npy, a dimension mismatch) fail with exit 1 naming the file, usage
# errors exit 2.
# Usage: bash tests/cli_vec.sh <strata-binary> <build-dir>
set -euo pipefail
STRATA=${1:?usage: cli_vec.sh <strata-binary> <build-dir>}
PY=/usr/bin/python3
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
fail() { echo "cli_vec: FAIL: $*" >&2; exit 1; }

"$STRATA" vec --help 2>&1 | grep -q "strata vec build" ||
    fail "vec --help (is cmd_vec registered in cli/main.c and cli/cli.h?)"
"$STRATA" vec build --help | grep -q -- "--ef-construction E" || fail "build --help"
"$STRATA" vec search --help | grep -q -- "--gt IDS" || fail "search --help"

# 1. data (clustered, seeded) and the brute-force answer, by NumPy
$PY - "$tmp" <<'EOF2' || fail "numpy data"
import sys, numpy as np
d = sys.argv[1]
rng = np.random.default_rng(3)
c = rng.standard_normal((20, 24)).astype(np.float32)
x = (c[rng.integers(0, 20, 3000)] + 0.4 * rng.standard_normal((3000, 24))).astype(np.float32)
q = (c[rng.integers(0, 20, 100)] + 0.4 * rng.standard_normal((100, 24))).astype(np.float32)
np.save(f"{d}/x.npy", x)
def fvecs(path, a):
    with open(path, "wb") as f:
        for row in a:
            np.array([a.shape[1]], np.int32).tofile(f); row.tofile(f)
fvecs(f"{d}/q.fvecs", q)
d2 = (q * q).sum(1)[:, None] + (x * x).sum(1)[None, :] - 2 * q @ x.T
gt = np.argsort(d2, axis=1, kind="stable")[:, :10].astype(np.int32)
with open(f"{d}/gt.ivecs", "wb") as f:
    for row in gt:
        np.array([10], np.int32).tofile(f); row.tofile(f)
np.save(f"{d}/gt_d.npy", np.take_along_axis(d2, gt.astype(np.int64), 1))
EOF2

# 2. build both kinds
"$STRATA" vec build --input "$tmp/x.npy" --out "$tmp/h.stvec" --threads 2 --json >"$tmp/b.json" \
    2>"$tmp/b.err" || fail "hnsw build: $(cat "$tmp/b.err")"
grep -q "built in" "$tmp/b.err" || fail "build time not on stderr"
$PY -c "import json,sys; j=json.load(open(sys.argv[1])); assert j['n']==3000 and j['dim']==24 and j['kind']=='hnsw' and j['build_s']>0, j" "$tmp/b.json" || fail "build --json"
"$STRATA" vec build --input "$tmp/x.npy" --out "$tmp/f.stvec" --kind flat 2>/dev/null || fail "flat build"
"$STRATA" vec build --input "$tmp/x.npy" --out "$tmp/i8.stvec" --kind flat --storage int8 2>/dev/null || fail "int8 build"

# 3. info
"$STRATA" vec info --index "$tmp/h.stvec" | grep -q "vectors      3000 (0 deleted)" || fail "info"
"$STRATA" vec info --index "$tmp/h.stvec" --json | $PY -c "import json,sys; j=json.load(sys.stdin); assert j['kind']=='hnsw' and j['m']==16 and j['m0']==32 and j['max_level']>=1, j" || fail "info --json"

# 4. searches: flat is exact, HNSW has recall >= 0.95, both .ivecs and printed ids
"$STRATA" vec search --index "$tmp/f.stvec" --queries "$tmp/q.fvecs" -k 10 --out "$tmp/f.ivecs" 2>"$tmp/s.err" \
    || fail "flat search: $(cat "$tmp/s.err")"
grep -q "queries/s" "$tmp/s.err" || fail "QPS not on stderr"
"$STRATA" vec search --index "$tmp/h.stvec" --queries "$tmp/q.fvecs" -k 10 --ef 64 --gt "$tmp/gt.ivecs" \
    --json --out "$tmp/h.ivecs" >"$tmp/s.json" 2>/dev/null || fail "hnsw search"
"$STRATA" vec search --index "$tmp/h.stvec" --queries "$tmp/q.fvecs" -k 3 >"$tmp/printed.txt" 2>/dev/null || fail "printed search"
[ "$(wc -l <"$tmp/printed.txt")" -eq 100 ] || fail "printed ids: one line per query"
$PY - "$tmp" <<'EOF2' || fail "search results vs NumPy"
import sys, json, numpy as np
d = sys.argv[1]
def ivecs(p):
    a = np.fromfile(p, np.int32); k = a[0]; return a.reshape(-1, k + 1)[:, 1:]
gt, gd = ivecs(f"{d}/gt.ivecs"), np.load(f"{d}/gt_d.npy")
x = np.load(f"{d}/x.npy")
q = np.fromfile(f"{d}/q.fvecs", np.int32).reshape(100, 25)[:, 1:].copy().view(np.float32)
f = ivecs(f"{d}/f.ivecs")
fd = ((q[:, None, :] - x[f]) ** 2).sum(-1)
assert np.allclose(fd, gd, rtol=1e-3, atol=1e-3), "flat distances differ from brute force"
h = ivecs(f"{d}/h.ivecs")
rec = np.mean([len(set(h[i]) & set(gt[i])) / 10 for i in range(100)])
j = json.load(open(f"{d}/s.json"))
assert rec >= 0.95, rec
assert abs(j["recall"] - rec) < 1e-9, (j["recall"], rec)
assert j["queries"] == 100 and j["k"] == 10 and j["qps"] > 0, j
p = np.loadtxt(f"{d}/printed.txt", dtype=np.int64)
assert p.shape == (100, 3) and (p[:, 0] == h[:, 0]).mean() > 0.95
EOF2
"$STRATA" vec search --index "$tmp/i8.stvec" --queries "$tmp/q.fvecs" -k 10 --gt "$tmp/gt.ivecs" --json \
    2>/dev/null | $PY -c "import json,sys; j=json.load(sys.stdin); assert j['recall']>=0.9, j" || fail "int8 recall"
"$STRATA" vec search --index "$tmp/h.stvec" --queries "$tmp/q.fvecs" -k 10 --exact --out "$tmp/e.npy" 2>/dev/null || fail "exact"
$PY -c "
import numpy as np, sys
a = np.fromfile('$tmp/f.ivecs', np.int32).reshape(-1, 11)[:, 1:]
b = np.load('$tmp/e.npy')
assert b.dtype == np.int64 and (a == b).all()" || fail "--exact on HNSW != flat"

# 5. hostile inputs: exit 1 and the file named
set +e
head -c 200 "$tmp/h.stvec" >"$tmp/trunc.stvec"
out=$("$STRATA" vec search --index "$tmp/trunc.stvec" --queries "$tmp/q.fvecs" -k 1 2>&1); rc=$?
[ $rc -eq 1 ] && echo "$out" | grep -q "trunc.stvec" || fail "truncated index: rc $rc: $out"
head -c 101 "$tmp/q.fvecs" >"$tmp/rag.fvecs"
out=$("$STRATA" vec build --input "$tmp/rag.fvecs" --out "$tmp/r.stvec" 2>&1); rc=$?
[ $rc -eq 1 ] && echo "$out" | grep -q "rag.fvecs" || fail "ragged fvecs: rc $rc: $out"
[ ! -e "$tmp/r.stvec" ] || fail "a failed build left an index"
$PY -c "import numpy as np; np.save('$tmp/f64.npy', np.zeros((3, 4)))"
out=$("$STRATA" vec build --input "$tmp/f64.npy" --out "$tmp/r.stvec" 2>&1); rc=$?
[ $rc -eq 1 ] && echo "$out" | grep -q "float32" || fail "float64 npy: rc $rc: $out"
$PY -c "import numpy as np; np.save('$tmp/d5.npy', np.zeros((3, 5), np.float32))"
out=$("$STRATA" vec search --index "$tmp/h.stvec" --queries "$tmp/d5.npy" -k 1 2>&1); rc=$?
[ $rc -eq 1 ] && echo "$out" | grep -q "dim 5" || fail "dim mismatch: rc $rc: $out"
"$STRATA" vec build --input "$tmp/x.npy" >/dev/null 2>&1; [ $? -eq 2 ] || fail "missing --out: exit 2"
"$STRATA" vec build --input "$tmp/x.npy" --out "$tmp/z" --metric cos >/dev/null 2>&1; [ $? -eq 2 ] || fail "bad metric: exit 2"
"$STRATA" vec search --index "$tmp/h.stvec" --queries "$tmp/q.fvecs" -k 0 >/dev/null 2>&1; [ $? -eq 2 ] || fail "k 0: exit 2"
"$STRATA" vec frob >/dev/null 2>&1; [ $? -eq 2 ] || fail "unknown subcommand: exit 2"
set -e
echo "cli_vec: ok"
