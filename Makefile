# Strata — the two commands.
#   make demo   installs what is missing, builds, runs the main job on bundled data
#   make test   installs what is missing, builds (normal + ASan/UBSan), runs every test
#   make        builds build/strata        make bench   runs the benchmarks
JOBS ?= $(shell nproc 2>/dev/null || echo 2)
CMAKE_FLAGS ?=

.PHONY: all setup build build-asan test test-normal test-asan demo bench clean format lint

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

# Leak checking is on by default in ASan on Linux; abort on the first report.
test-asan: build-asan
	cd build-asan && ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 \
	  UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 ctest --output-on-failure -j $(JOBS)

test: setup
	tools/check_layers.sh
	$(MAKE) test-normal
	$(MAKE) test-asan
	@echo "make test: all tests passed (normal and sanitizer builds)"

demo: build
	build/strata hw --measure
	build/examples/train_mlp

bench: build
	build/strata bench ops

clean:
	rm -rf build build-asan

format:
	clang-format -i $$(git ls-files '*.c' '*.h')
