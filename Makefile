# Entry points for people and CI. `make run` and `make test` work on a fresh Debian 12 machine.
SHELL := /bin/bash
BUILD ?= build
JOBS ?= $(shell nproc)
CMAKE_ARGS ?=
SWEEPCTL = $(BUILD)/cli/sweepctl
EXAMPLE ?= examples/bayes-hyperband/sweep.yaml

.PHONY: all deps configure build test test-asan run bench fuzz soak format format-check clean

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
	LSAN_OPTIONS=suppressions=$(CURDIR)/tests/lsan.supp \
	  $(MAKE) test BUILD=build-asan CMAKE_ARGS="-DSWEEPD_SANITIZE=address,undefined"

# Only what `sweepctl run` needs (it embeds the scheduler and an agent), not the tests.
run: configure
	cmake --build $(BUILD) -j $(JOBS) --target sweepctl
	$(SWEEPCTL) run $(EXAMPLE) --db $(BUILD)/example-sweep.db --workdir $(BUILD)/example-work

bench: build
	$(BUILD)/bench/store_bench --dir bench-data
	$(BUILD)/bench/sweep_bench --dir bench-data
	$(BUILD)/bench/pruning_bench
	$(BUILD)/bench/strategy_bench
	$(BUILD)/bench/search_quality

# libFuzzer targets (clang-14), each run FUZZ_SECONDS on its seed corpus in fuzz/corpus/ from a
# fixed seed (FUZZ_SEED), so a finding in CI is found again here by the same command; what they
# add goes to build-fuzz/corpus/. A finding stops with the fuzzer's report and the reproducer
# (its path and base64), since CI keeps no files.
FUZZ_SECONDS ?= 60
FUZZ_SEED ?= 1
FUZZERS = spec_parser report_line command_template agent_message metric_pattern spec_numbers
fuzz: deps
	CC=clang-14 CXX=clang++-14 cmake -S . -B build-fuzz -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo \
	  -DSWEEPD_FUZZ=ON -DBUILD_TESTING=OFF
	cmake --build build-fuzz -j $(JOBS) --target $(addprefix fuzz_,$(FUZZERS))
	for f in $(FUZZERS); do \
	  mkdir -p build-fuzz/corpus/$$f build-fuzz/artifacts && \
	  build-fuzz/fuzz/fuzz_$$f -seed=$(FUZZ_SEED) -max_total_time=$(FUZZ_SECONDS) -timeout=20 \
	    -rss_limit_mb=4096 -artifact_prefix=build-fuzz/artifacts/$$f- -print_final_stats=1 \
	    build-fuzz/corpus/$$f fuzz/corpus/$$f > build-fuzz/fuzz_$$f.log 2>&1; \
	  status=$$?; \
	  grep -E "^(stat::number_of_executed_units|#[0-9]+ +DONE)" build-fuzz/fuzz_$$f.log; \
	  if [ $$status -ne 0 ]; then \
	    echo "fuzz_$$f failed (exit $$status); its report:"; tail -n 60 build-fuzz/fuzz_$$f.log; \
	    for a in $$(grep -oE "build-fuzz/artifacts/[^ ]+" build-fuzz/fuzz_$$f.log | sort -u); do \
	      test -f $$a && echo "reproducer $$a (base64):" && base64 -w 0 $$a && echo; \
	    done; \
	    exit 1; \
	  fi; \
	done

# Deterministic simulation of the scheduler core, far beyond the 2,000 seeds of `make test`
# (SOAK_SEEDS from SOAK_FIRST). A failing seed prints the command that replays it.
SOAK_SEEDS ?= 50000
SOAK_FIRST ?= 100000
soak: build
	$(BUILD)/tests/sim/engine_sim --first-seed $(SOAK_FIRST) --seeds $(SOAK_SEEDS)

format:
	git ls-files '*.cc' '*.h' | xargs clang-format -i

format-check:
	git ls-files '*.cc' '*.h' | xargs clang-format --dry-run -Werror

clean:
	rm -rf build build-asan build-fuzz
