# Entry points for people and CI. `make run` and `make test` work on a fresh Debian 12 machine.
BUILD ?= build
JOBS ?= $(shell nproc)
CMAKE_ARGS ?=
SWEEPCTL = $(BUILD)/cli/sweepctl
EXAMPLE ?= examples/bayes-hyperband/sweep.yaml

.PHONY: all deps configure build test test-asan run bench format format-check clean

all: build

deps:
	scripts/install-deps

configure: deps
	cmake -S . -B $(BUILD) -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo $(CMAKE_ARGS)

build: configure
	cmake --build $(BUILD) -j $(JOBS)

test: build
	ctest --test-dir $(BUILD) --output-on-failure -j $(JOBS)

test-asan:
	$(MAKE) test BUILD=build-asan CMAKE_ARGS="-DSWEEPD_SANITIZE=address,undefined"

run: build
	$(SWEEPCTL) run $(EXAMPLE) --db build/example-sweep.db --workdir build/example-work

bench: build
	$(BUILD)/bench/store_bench --dir bench-data
	$(BUILD)/bench/sweep_bench --dir bench-data
	$(BUILD)/bench/pruning_bench
	$(BUILD)/bench/search_quality

format:
	git ls-files '*.cc' '*.h' | xargs clang-format -i

format-check:
	git ls-files '*.cc' '*.h' | xargs clang-format --dry-run -Werror

clean:
	rm -rf build build-asan
