# authmd: the two commands are `make run` and `make test`; the rest serve them.
# CMake does the building; this file installs what is missing and drives it.

BUILD      ?= build
ASAN_BUILD ?= build-asan
FUZZ_BUILD ?= build-fuzz
FUZZ_SECONDS ?= 60
JOBS       ?= $(shell nproc 2>/dev/null || echo 2)
CONFIG     ?=
MAKEFLAGS  += --no-print-directory

.PHONY: all deps build build-asan run test test-fast fuzz fuzz-run format clean

all: build

deps:
	@bash scripts/deps.sh

$(BUILD)/Makefile: CMakeLists.txt | deps
	@cmake -S . -B $(BUILD) -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null

$(ASAN_BUILD)/Makefile: CMakeLists.txt | deps
	@cmake -S . -B $(ASAN_BUILD) -DCMAKE_BUILD_TYPE=Debug -DAUTHMD_SANITIZE=ON >/dev/null

build: deps $(BUILD)/Makefile
	@cmake --build $(BUILD) -j $(JOBS)

build-asan: deps $(ASAN_BUILD)/Makefile
	@cmake --build $(ASAN_BUILD) -j $(JOBS)

# Starts the service on its embedded defaults (or CONFIG=file), data in var/.
run: build
	@scripts/run.sh $(BUILD) $(CONFIG)

# Every test, in the normal build and again under AddressSanitizer + UBSan.
test: build build-asan
	@echo "== tests (RelWithDebInfo) =="
	@cd $(BUILD) && ctest --output-on-failure -j $(JOBS)
	@echo "== tests (ASan + UBSan) =="
	@cd $(ASAN_BUILD) && ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 \
		UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
		ctest --output-on-failure -j $(JOBS)

# Only the normal build's tests: the quick loop while developing.
test-fast: build
	@cd $(BUILD) && ctest --output-on-failure -j $(JOBS)

# libFuzzer targets (clang) into $(FUZZ_BUILD)/fuzz_*; see docs/fuzzing.md.
# `make test` does not need this: it replays the corpora with gcc builds.
$(FUZZ_BUILD)/Makefile: CMakeLists.txt fuzz/CMakeLists.txt
	@bash scripts/deps.sh fuzz
	@CC=clang cmake -S . -B $(FUZZ_BUILD) -DCMAKE_BUILD_TYPE=RelWithDebInfo -DAUTHMD_FUZZ=ON >/dev/null

fuzz: $(FUZZ_BUILD)/Makefile
	@cmake --build $(FUZZ_BUILD) -j $(JOBS) --target fuzz_all

# Runs every target for FUZZ_SECONDS each, one at a time, and prints a
# summary table for docs/fuzzing.md.
fuzz-run: fuzz
	@scripts/fuzz-all.sh $(FUZZ_SECONDS)

format:
	@clang-format -i $$(git ls-files '*.c' '*.h')

clean:
	@rm -rf $(BUILD) $(ASAN_BUILD) $(FUZZ_BUILD)
