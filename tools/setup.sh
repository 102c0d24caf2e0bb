#!/usr/bin/env bash
# Installs the Debian packages Strata needs to build and test, when missing.
# Idempotent: checks with dpkg-query first, runs apt-get update only when
# something is missing, uses sudo when not root. Nothing is downloaded from
# anywhere but Debian's archive.
set -euo pipefail

PKGS=(
  build-essential cmake pkg-config clang
  libopenblas-dev   # BLAS (cblas_sgemm) and LAPACK
  libjansson-dev    # JSON
  libcmocka-dev     # unit tests
  libpcre2-dev      # regexes (tokenizer pre-tokenization)
  libclang-rt-14-dev # libFuzzer and sanitizer runtimes for clang builds
  python3           # test scripts check JSON output with the standard library
  libmicrohttpd-dev # HTTP servers (serve, hub serve, ui)
  libcurl4-openssl-dev # HTTP client (hub pull/push)
  libssl-dev        # libcrypto: SHA-256 (hub blobs, ingest manifests)
  libsqlite3-dev    # tracking store, RAG chunks (FTS5)
  libpq-dev         # tracking on PostgreSQL
  postgresql        # the throwaway server tools/pg_test.sh starts for the tracking tests
  chromium          # headless screenshot of the tracking dashboard (tests/cli_ui.sh)
  curl              # the demo's chat request; shell tests
  libopenmpi-dev openmpi-bin # distributed training (mpirun -np N strata train)
  libedit-dev       # line editing and history in strata chat
  libxml2-dev       # HTML text extraction (strata rag index)
  libpoppler-glib-dev # PDF text extraction (strata rag index)
  zlib1g-dev libzstd-dev libsnappy-dev liblz4-dev libbrotli-dev # Parquet codecs
)
# `tools/setup.sh --bench` (make bench): the peers the benchmarks measure
# against. Not needed to build, demo or test.
if [ "${1:-}" = "--bench" ]; then
  PKGS+=(python3-torch python3-faiss python3-numpy)
fi

missing=()
for p in "${PKGS[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
    missing+=("$p")
  fi
done
# node and npm run the real OpenAI/MCP clients the tests drive (tests/js).
# Checked by command, not package: a machine may carry another build of
# nodejs that bundles npm, which Debian's separate npm package conflicts with.
command -v node >/dev/null || missing+=(nodejs)
command -v npm >/dev/null || missing+=(npm)
[ ${#missing[@]} -eq 0 ] && exit 0

echo "setup: installing ${missing[*]}" >&2
SUDO=""
if [ "$(id -u)" -ne 0 ]; then
  command -v sudo >/dev/null || { echo "setup: not root and no sudo; install: ${missing[*]}" >&2; exit 1; }
  SUDO="sudo"
fi
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
$SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}"
