# Strata — the two commands.
#   make demo   installs what is missing, builds, runs the main job on bundled data
#   make test   installs what is missing, builds (normal + ASan/UBSan), runs every test
#   make        builds build/strata        make bench   runs the benchmarks
JOBS ?= $(shell nproc 2>/dev/null || echo 2)
CMAKE_FLAGS ?=

.PHONY: all setup build build-asan test test-normal test-asan fuzz demo bench clean format lint

all: build

setup:
	@tools/setup.sh

build/CMakeCache.txt: | setup
	cmake -S . -B build -DCMAKE_BUILD_TYPE=Release $(CMAKE_FLAGS)

build: setup build/CMakeCache.txt
	cmake --build build -j $(JOBS)

build-asan/CMakeCache.txt: | setup
	cmake -S . -B build-asan -DCMAKE_BUILD_TYPE=Debug -DSTRATA_SANITIZE=ON $(CMAKE_FLAGS)

build-asan: setup build-asan/CMakeCache.txt
	cmake --build build-asan -j $(JOBS)

test-normal: build
	cd build && ctest --output-on-failure -j $(JOBS)
	tools/pg_test.sh build/tests/test_track

# Leak checking is on by default in ASan on Linux; abort on the first report.
test-asan: build-asan
	cd build-asan && ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 \
	  UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 ctest --output-on-failure -j $(JOBS)
	ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
	  tools/pg_test.sh build-asan/tests/test_track

test: setup
	tools/check_layers.sh
	tools/npm_test_deps.sh
	$(MAKE) test-normal
	$(MAKE) test-asan
	$(MAKE) fuzz
	@echo "make test: all tests passed (normal, sanitizer and fuzz builds)"

# libFuzzer targets (tests/fuzz/fuzz_*.c), built with clang in build-fuzz and
# run FUZZ_SECONDS each over their seed corpus tests/fuzz/corpus/<name>/ (new
# inputs go to build-fuzz/corpus/<name>/, crashes to build-fuzz/crashes/).
FUZZ_SECONDS ?= 10
build-fuzz/CMakeCache.txt: | setup
	CC=clang cmake -S . -B build-fuzz -DCMAKE_BUILD_TYPE=Debug -DSTRATA_FUZZ=ON $(CMAKE_FLAGS)

fuzz: setup build-fuzz/CMakeCache.txt
	cmake --build build-fuzz -j $(JOBS) --target fuzzers
	@set -e; mkdir -p build-fuzz/crashes; for f in build-fuzz/fuzz/fuzz_*; do \
	  n=$$(basename $$f); mkdir -p build-fuzz/corpus/$$n tests/fuzz/corpus/$$n; \
	  echo "fuzz: $$n for $(FUZZ_SECONDS) s"; \
	  ASAN_OPTIONS=detect_leaks=1 UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
	    $$f -max_total_time=$(FUZZ_SECONDS) -print_final_stats=0 \
	    -artifact_prefix=build-fuzz/crashes/$$n- build-fuzz/corpus/$$n tests/fuzz/corpus/$$n \
	    2>build-fuzz/$$n.log || { tail -40 build-fuzz/$$n.log; exit 1; }; \
	  tail -1 build-fuzz/$$n.log; done

demo: build
	build/strata hw --measure
	build/examples/train_mlp
	build/strata train --config shakespeare-char-baby --data data/tinyshakespeare.txt --out build/demo-model
	build/strata sample --model build/demo-model -n 300 --prompt "ROMEO:"
	tools/demo_serve.sh build/strata build/demo-model

bench: build
	tools/setup.sh --bench
	cd bench/js && ([ -d node_modules ] || npm ci --no-audit --no-fund --loglevel=error)
	build/strata bench ops
	build/strata bench tokenizer
	build/strata bench train
	build/strata bench loader
	build/strata bench parquet
	build/strata bench decode
	build/strata bench llamacpp
	build/strata bench serve
	build/strata bench hubpull
	build/strata bench track
	build/strata bench vec

clean:
	rm -rf build build-asan build-fuzz

format:
	clang-format -i $$(git ls-files '*.c' '*.h')
