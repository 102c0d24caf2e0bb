#!/usr/bin/env bash
# pg_test.sh — runs the tracking tests against a real, throwaway PostgreSQL.
#
# Starts a private PostgreSQL server (Debian's postgresql package, any
# version under /usr/lib/postgresql) in a temporary folder, listening only
# on a unix socket there (no TCP port, trust authentication for the
# socket's owner), exports STRATA_TEST_PG_URI and runs the given command
# (default: build/tests/test_track), then stops the server and removes the
# folder, whatever happens. Works without a terminal and as root: the
# server cannot run as root, so then it runs as the `postgres` system user
# (created by the package) through runuser, in a folder that user owns.
#
# usage: tools/pg_test.sh [COMMAND [ARGS...]]
#   e.g. tools/pg_test.sh build-asan/tests/test_track
set -euo pipefail
cd "$(dirname "$0")/.."

bindir=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -1 || true)
if [ -z "$bindir" ] || [ ! -x "$bindir/initdb" ]; then
    echo "pg_test: PostgreSQL server not installed (apt-get install postgresql)" >&2
    exit 1
fi
[ $# -gt 0 ] || set -- build/tests/test_track

dir=$(mktemp -d /tmp/strata-pg.XXXXXX)
as_pg=()
if [ "$(id -u)" -eq 0 ]; then
    id postgres >/dev/null 2>&1 || { echo "pg_test: running as root but there is no postgres user" >&2; exit 1; }
    chown postgres: "$dir"
    as_pg=(runuser -u postgres --)
fi
stop() {
    "${as_pg[@]}" "$bindir/pg_ctl" -D "$dir/data" -m immediate stop >/dev/null 2>&1 || true
    rm -rf "$dir"
}
trap stop EXIT

"${as_pg[@]}" "$bindir/initdb" -D "$dir/data" -A trust -U strata --no-sync -E UTF8 >"$dir/initdb.log" 2>&1 ||
    { cat "$dir/initdb.log" >&2; exit 1; }
"${as_pg[@]}" "$bindir/pg_ctl" -D "$dir/data" -l "$dir/server.log" -w -t 60 \
    -o "-k $dir -c listen_addresses= -c fsync=off -c max_connections=100" start >/dev/null ||
    { cat "$dir/server.log" >&2; exit 1; }
"${as_pg[@]}" "$bindir/createdb" -h "$dir" -U strata strata_test

export STRATA_TEST_PG_URI="postgresql://strata@/strata_test?host=$dir"
echo "pg_test: $("$bindir/postgres" --version) on $dir; running: $*" >&2
"$@"
