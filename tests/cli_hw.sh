#!/usr/bin/env bash
# cli_hw.sh — `strata hw` end to end: the JSON report has every documented key
# with the right type, --measure gives positive numbers, usage errors exit 2
# and --help exits 0. Usage: bash tests/cli_hw.sh <strata-binary> <build-dir>
set -euo pipefail
STRATA=${1:?usage: cli_hw.sh <strata-binary> <build-dir>}
PY=/usr/bin/python3
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

fail() { echo "cli_hw: FAIL: $*" >&2; exit 1; }

# 1. The plain report: JSON with every key and type (docs/L1-hardware.md).
"$STRATA" hw --json >"$tmp/hw.json" || fail "hw --json exited $?"
$PY - "$tmp/hw.json" <<'EOF' || fail "hw --json: bad document"
import json, sys
d = json.load(open(sys.argv[1]))
def need(obj, key, types, where):
    if key not in obj: sys.exit(f"{where}: missing key {key!r}")
    if not isinstance(obj[key], types) or isinstance(obj[key], bool) != (types is bool):
        sys.exit(f"{where}.{key}: {obj[key]!r} is not {types}")
    return obj[key]
need(d, "strata_version", str, "root")
cpu = need(d, "cpu", dict, "root")
for k in ("arch", "vendor", "model", "simd_best", "simd_level"): need(cpu, k, str, "cpu")
for k in ("sockets", "cores", "threads"): assert need(cpu, k, int, "cpu") >= 1, k
assert cpu["cores"] <= cpu["threads"], "cores > threads"
simd = need(cpu, "simd", list, "cpu")
assert all(isinstance(s, str) for s in simd), "simd names"
assert cpu["simd_level"] in ("scalar", "avx2", "avx512", "neon"), cpu["simd_level"]
assert "simd_env" in cpu and (cpu["simd_env"] is None or isinstance(cpu["simd_env"], str))
if cpu["arch"] == "x86_64": assert "sse4_2" in simd, simd
caches = need(d, "caches", dict, "root")
for k in ("l1d_bytes", "l2_bytes", "l3_bytes", "line_bytes"): assert need(caches, k, int, "caches") >= 0
mem = need(d, "memory", dict, "root")
assert need(mem, "total_bytes", int, "memory") >= need(mem, "available_bytes", int, "memory") > 0
assert need(d, "numa_nodes", int, "root") >= 1
blas = need(d, "blas", dict, "root")
for k in ("name", "version", "core", "config"): need(blas, k, str, "blas")
assert need(blas, "threads", int, "blas") >= 1
assert blas["name"], "blas.name empty"
need(d, "cuda_built", bool, "root")
gpus = need(d, "gpus", list, "root")
for g in gpus:
    need(g, "name", str, "gpu"); need(g, "compute_capability", str, "gpu")
    assert need(g, "memory_bytes", int, "gpu") > 0
    need(g, "driver_version", int, "gpu"); need(g, "runtime_version", int, "gpu")
if not d["cuda_built"]: assert gpus == [], "gpus without CUDA"
assert "measure" not in d, "measure without --measure"
EOF

# 2. The probes: positive numbers, the thread count asked for.
"$STRATA" hw --measure --json --threads 2 >"$tmp/m.json" || fail "hw --measure --json exited $?"
$PY - "$tmp/m.json" <<'EOF' || fail "hw --measure --json: bad numbers"
import json, math, sys
m = json.load(open(sys.argv[1]))["measure"]
assert m["threads"] == 2, m
for k in ("sgemm_gflops", "copy_gbs", "triad_gbs", "ridge_flop_per_byte"):
    v = m[k]
    assert isinstance(v, (int, float)) and math.isfinite(v) and v > 0, (k, v)
assert abs(m["ridge_flop_per_byte"] - m["sgemm_gflops"] / m["triad_gbs"]) <= 1e-6 * m["ridge_flop_per_byte"]
EOF

# 3. The report for people names its sections.
out=$("$STRATA" hw) || fail "hw exited $?"
for section in CPU Caches Memory BLAS GPUs "kernel level"; do
    grep -q "$section" <<<"$out" || fail "hw report lacks '$section'"
done

# 4. STRATA_SIMD: a lower level is honoured, a bogus one is warned about.
lvl=$(STRATA_SIMD=scalar "$STRATA" hw --json | $PY -c 'import json,sys; print(json.load(sys.stdin)["cpu"]["simd_level"])')
[ "$lvl" = scalar ] || fail "STRATA_SIMD=scalar gave simd_level=$lvl"
STRATA_SIMD=bogus "$STRATA" hw --json >/dev/null 2>"$tmp/err" || fail "STRATA_SIMD=bogus should still report"
grep -q bogus "$tmp/err" || fail "STRATA_SIMD=bogus: no warning naming the value"

# 5. Usage: help exits 0 and documents the options; mistakes exit 2.
"$STRATA" hw --help >"$tmp/help" || fail "hw --help exited $?"
for word in --measure --json --threads STRATA_SIMD STRATA_THREADS; do
    grep -q -- "$word" "$tmp/help" || fail "help lacks $word"
done
expect2() {
    set +e; "$STRATA" hw "$@" >/dev/null 2>&1; rc=$?; set -e
    [ $rc -eq 2 ] || fail "hw $* exited $rc, want 2"
}
expect2 --bogus
expect2 --threads
expect2 --threads 0
expect2 --threads abc
expect2 --threads=-3
echo "cli_hw: ok"
