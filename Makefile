# authmd: the two commands are `make run` and `make test`; the rest serve them.
# CMake does the building; this file installs what is missing and drives it.

BUILD      ?= build
ASAN_BUILD ?= build-asan
FUZZ_BUILD ?= build-fuzz
FUZZ_SECONDS ?= 60
JOBS       ?= $(shell nproc 2>/dev/null || echo 2)
CONFIG     ?=
# `make run` only: the programs' ports on 127.0.0.1 (empty: 8000 and 4000)
# and the folder for their data, logs and generated configuration.
PORT          ?=
PROVIDER_PORT ?=
VAR_DIR       ?= var
MAKEFLAGS  += --no-print-directory

PREFIX     ?= /usr/local
DESTDIR    ?=

.PHONY: all deps deps-package build build-asan run test test-fast bench fuzz fuzz-run format clean \
	install deb check-package

all: build

deps:
	@bash scripts/deps.sh

# Packaging tools (debhelper, lintian, ...): only for `make deb` and
# `make check-package`.
deps-package:
	@bash scripts/deps.sh --package

# `make build` never installs packages (packagers run it in a clean chroot
# with the Build-Depends): a missing library is CMake's error. `make deps`,
# `make run` and `make test` install what is missing.
$(BUILD)/Makefile: CMakeLists.txt
	@cmake -S . -B $(BUILD) -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null

$(ASAN_BUILD)/Makefile: CMakeLists.txt
	@cmake -S . -B $(ASAN_BUILD) -DCMAKE_BUILD_TYPE=Debug -DAUTHMD_SANITIZE=ON >/dev/null

build: $(BUILD)/Makefile
	@cmake --build $(BUILD) -j $(JOBS)

build-asan: $(ASAN_BUILD)/Makefile
	@cmake --build $(ASAN_BUILD) -j $(JOBS)

# Starts the provider and the server trusting it (or, with CONFIG=file, the
# server alone), data in VAR_DIR; PORT=, PROVIDER_PORT= move them.
run: deps
	@$(MAKE) build
	@scripts/run.sh --build $(BUILD) --var $(VAR_DIR) $(if $(PORT),--port $(PORT)) \
		$(if $(PROVIDER_PORT),--provider-port $(PROVIDER_PORT)) \
		$(if $(CONFIG),--config $(CONFIG))

# Installs the programs, libauthmd-client (.so, header, authmd-client.pc),
# the samples, the auth.md template, man pages and systemd units under
# PREFIX (default /usr/local), staged under DESTDIR when set.
install: build
	@DESTDIR="$(DESTDIR)" cmake --install $(BUILD) --prefix "$(PREFIX)"

# The Debian packages, in the parent directory (debian/, docs/operations.md).
deb: deps-package
	@dpkg-buildpackage -us -uc -b

# Builds the Debian packages, runs lintian and starts the packaged server
# (tests/integration/test_packaging.py); slow, so not part of `make test`.
check-package: deps deps-package
	@$(MAKE) build
	@cd tests/integration && AUTHMD_BIN_DIR=$(CURDIR)/$(BUILD) AUTHMD_PACKAGE_TEST=1 \
		PYTHONDONTWRITEBYTECODE=1 python3 -m unittest -v test_packaging

# Every test, in the normal build and again under AddressSanitizer + UBSan.
test: deps
	@$(MAKE) build build-asan
	@echo "== tests (RelWithDebInfo) =="
	@cd $(BUILD) && ctest --output-on-failure -j $(JOBS)
	@echo "== tests (ASan + UBSan) =="
	@cd $(ASAN_BUILD) && ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 \
		UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
		ctest --output-on-failure -j $(JOBS)

# Only the normal build's tests: the quick loop while developing.
test-fast: deps
	@$(MAKE) build
	@cd $(BUILD) && ctest --output-on-failure -j $(JOBS)

# authmd-server beside nginx and openssl speed in one run (docs/performance.md),
# on the normal build. Knobs: BENCH_SECONDS BENCH_CONNS BENCH_THREADS
# BENCH_ROUNDS BENCH_GROWTH BENCH_SWEEP BENCH_TOKENS BENCH_PG BENCH_KEEP BENCH_JSON, e.g.
# `make bench BENCH_SECONDS=5` or `make bench BENCH_GROWTH=1000000`.
export BENCH_SECONDS BENCH_CONNS BENCH_THREADS BENCH_ROUNDS BENCH_GROWTH BENCH_SWEEP BENCH_TOKENS BENCH_KEEP \
	BENCH_JSON BENCH_PG
bench:
	@bash scripts/deps.sh --bench
	@cmake -S . -B $(BUILD) -DCMAKE_BUILD_TYPE=RelWithDebInfo -DAUTHMD_BENCH=ON >/dev/null
	@cmake --build $(BUILD) -j $(JOBS)
	@python3 bench/bench.py --build $(BUILD)

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
