#!/usr/bin/env bash
# The layer check: a file includes only headers of its own layer or a lower
# one (ARCHITECTURE.md). Public headers map to layers by name, private
# headers ("folder/x.h" under src/) by their folder. Exit 1 on a violation.
set -euo pipefail
cd "$(dirname "$0")/.."

layer_of_dir() {  # src/<dir>/... -> layer number
  case "$1" in
    base) echo 0 ;; hw) echo 1 ;; backend) echo 2 ;; tensor) echo 3 ;;
    nn|model) echo 4 ;; data) echo 5 ;; hub|infer|serve) echo 6 ;;
    track|pipeline|dist) echo 7 ;; app) echo 8 ;; *) echo -1 ;;
  esac
}
layer_of_header() {  # strata/x.h -> layer number
  case "$1" in
    base.h) echo 0 ;; hw.h) echo 1 ;; backend.h) echo 2 ;; tensor.h|quant.h) echo 3 ;;
    nn.h|model.h) echo 4 ;; data.h|tokenizer.h|parquet.h|arrow.h) echo 5 ;;
    hub.h|infer.h|serve.h|registry.h) echo 6 ;; track.h|pipeline.h|dist.h) echo 7 ;;
    app.h|vecindex.h) echo 8 ;; *) echo -1 ;;
  esac
}

bad=0
while IFS= read -r f; do
  dir=$(echo "$f" | cut -d/ -f2)
  mine=$(layer_of_dir "$dir")
  [ "$mine" -lt 0 ] && { echo "check_layers: $f: folder src/$dir has no layer" >&2; bad=1; continue; }
  while IFS= read -r inc; do
    case "$inc" in
      strata/*) l=$(layer_of_header "${inc#strata/}") ;;
      */*) l=$(layer_of_dir "${inc%%/*}") ;;
      *) continue ;;  # same-folder private header
    esac
    if [ "$l" -lt 0 ]; then echo "check_layers: $f includes $inc: unknown layer" >&2; bad=1
    elif [ "$l" -gt "$mine" ]; then
      echo "check_layers: $f (layer $mine) includes $inc (layer $l)" >&2; bad=1
    fi
  done < <(sed -n 's/^[[:space:]]*#[[:space:]]*include[[:space:]]*"\([^"]*\)".*/\1/p' "$f")
done < <(find src include -name '*.[ch]' | sed 's|^include/strata/|src/public/|' | grep '^src/' | grep -v '^src/public/')

# Public headers: each includes only headers of its layer or lower.
for h in include/strata/*.h; do
  mine=$(layer_of_header "$(basename "$h")")
  while IFS= read -r inc; do
    l=$(layer_of_header "${inc#strata/}")
    if [ "$l" -gt "$mine" ]; then echo "check_layers: $h includes $inc (layer $l)" >&2; bad=1; fi
  done < <(sed -n 's/^#include "\(strata\/[^"]*\)".*/\1/p' "$h")
done
[ $bad -eq 0 ] && echo "check_layers: ok"
exit $bad
