# troupe: the two commands from the README are `make demo` and `make test`.
# Each installs missing Debian packages first (scripts/install-deps).

BUILD_DIR ?= build
BUILD_TYPE ?= Release
MAKEFLAGS += --no-print-directory
JOBS ?= $(shell nproc 2>/dev/null || echo 2)
CMAKE_FLAGS ?=
# WERROR=1: every warning is an error (TROUPE_WERROR) in each tree below:
# build/, build-asan/, build-tsan/ and build-clang/. .ci/run sets it.
WERROR ?= 0
WERROR_FLAG = -DTROUPE_WERROR=$(if $(filter 1,$(WERROR)),ON,OFF)

.PHONY: all deps configure build test demo run clean

all: build

deps:
	@scripts/install-deps

configure: deps
	@cmake -S . -B $(BUILD_DIR) -DCMAKE_BUILD_TYPE=$(BUILD_TYPE) $(WERROR_FLAG) $(CMAKE_FLAGS) >/dev/null

build: configure
	@cmake --build $(BUILD_DIR) -j $(JOBS)

# Every test; each integration test bounds its own time, ctest bounds each at 300 s.
test: build
	@cd $(BUILD_DIR) && ctest --output-on-failure -j $(JOBS) --timeout 300

# --- Sanitizers and fuzzing (docs/testing.md) --------------------------------
.PHONY: test-asan test-tsan fuzz
SANITIZE_BUILD_TYPE ?= RelWithDebInfo
SANITIZE_CMAKE = cmake -S . -DCMAKE_BUILD_TYPE=$(SANITIZE_BUILD_TYPE) -DTROUPE_BUILD_BENCH=OFF \
  $(WERROR_FLAG)
# The sanitizers need their fixed shadow-memory layout; on kernels with more
# mmap randomisation (vm.mmap_rnd_bits > 28) this toolchain's TSan dies with
# "unexpected memory mapping" (and ASan can loop on DEADLYSIGNAL). Running with
# ASLR off (setarch -R, inherited by every child, and by the test discovery
# the build runs) avoids that; where personality() is not allowed, run as is.
NO_ASLR = $(shell setarch $$(uname -m) -R true 2>/dev/null && echo setarch $$(uname -m) -R)

# The suite under AddressSanitizer + UndefinedBehaviorSanitizer (build-asan/).
test-asan: deps
	@$(SANITIZE_CMAKE) -B build-asan -DTROUPE_SANITIZE=address,undefined >/dev/null
	@$(NO_ASLR) cmake --build build-asan -j $(JOBS)
	@cd build-asan && ASAN_OPTIONS=detect_stack_use_after_return=1:strict_init_order=1 \
	  UBSAN_OPTIONS=print_stacktrace=1 $(NO_ASLR) ctest --output-on-failure -j $(JOBS) --timeout 600

# The suite under ThreadSanitizer (build-tsan/). The only suppressions are
# moodycamel's known false positives (tests/tsan.supp).
test-tsan: deps
	@$(SANITIZE_CMAKE) -B build-tsan -DTROUPE_SANITIZE=thread >/dev/null
	@$(NO_ASLR) cmake --build build-tsan -j $(JOBS)
	@cd build-tsan && TSAN_OPTIONS="suppressions=$(CURDIR)/tests/tsan.supp second_deadlock_stack=1" \
	  $(NO_ASLR) ctest --output-on-failure -j $(JOBS) --timeout 600

# Each libFuzzer target (tests/fuzz) for FUZZ_SECONDS, with clang, ASan and
# UBSan (build-fuzz/). New inputs go to build-fuzz/corpus/<target>; copy the
# ones worth keeping into tests/fuzz/corpus/<target>. Crashes land in
# build-fuzz/artifacts/.
FUZZ_SECONDS ?= 60
FUZZ_TARGETS = codec buffer proxy_protocol
fuzz:
	@scripts/install-deps clang libclang-rt-14-dev
	@$(SANITIZE_CMAKE) -B build-fuzz -DCMAKE_CXX_COMPILER=clang++ -DTROUPE_BUILD_TESTS=OFF \
	  -DTROUPE_BUILD_FUZZERS=ON -DTROUPE_SANITIZE=address,undefined >/dev/null
	@cmake --build build-fuzz -j $(JOBS) --target $(FUZZ_TARGETS:%=%_fuzzer)
	@mkdir -p build-fuzz/artifacts
	@for t in $(FUZZ_TARGETS); do \
	  mkdir -p build-fuzz/corpus/$$t; \
	  echo "fuzz: $$t for $(FUZZ_SECONDS) s"; \
	  build-fuzz/fuzz/$${t}_fuzzer -max_total_time=$(FUZZ_SECONDS) -max_len=4096 \
	    -print_final_stats=1 -artifact_prefix=build-fuzz/artifacts/$$t- \
	    build-fuzz/corpus/$$t tests/fuzz/corpus/$$t || exit 1; \
	done

# --- Clang (docs/testing.md) -------------------------------------------------
# The suite built by Debian's clang++ (build-clang/, Release, no benchmarks, no
# sanitizer): users build with both compilers, and each rejects code the other
# takes.
.PHONY: test-clang
test-clang: deps
	@scripts/install-deps clang
	@cmake -S . -B build-clang -DCMAKE_BUILD_TYPE=Release -DCMAKE_CXX_COMPILER=clang++ \
	  -DTROUPE_BUILD_BENCH=OFF $(WERROR_FLAG) >/dev/null
	@cmake --build build-clang -j $(JOBS)
	@cd build-clang && ctest --output-on-failure -j $(JOBS) --timeout 300

# --- Formatting (.clang-format) ----------------------------------------------
# format rewrites every tracked C++ file in place; format-check changes
# nothing and fails naming the files clang-format would change.
.PHONY: format format-check
FORMAT_FILES = $(shell git ls-files '*.h' '*.cc')
format:
	@scripts/install-deps clang-format
	@clang-format -i $(FORMAT_FILES)

format-check:
	@scripts/install-deps clang-format
	@differ=$$(for f in $(FORMAT_FILES); do \
	  clang-format --dry-run -Werror "$$f" >/dev/null 2>&1 || echo "$$f"; done); \
	if [ -n "$$differ" ]; then \
	  echo "format-check: clang-format would change these files (make format):"; \
	  echo "$$differ" | sed 's/^/  /'; exit 1; \
	fi; echo "format-check: all $(words $(FORMAT_FILES)) files match .clang-format"

# --- Benchmarks (docs/benchmarks.md) -----------------------------------------
.PHONY: bench bench-micro bench-deps
# Bench builds need the benchmark targets even where a build dir turned them off.
bench bench-micro: CMAKE_FLAGS += -DTROUPE_BUILD_BENCH=ON
# The asio peer needs Boost.Asio's headers; only the benchmark wants them. The
# charts' python3-matplotlib is in scripts/install-deps' own list (make test
# tests the charts).
bench-deps:
	@scripts/install-deps libboost-dev python3

# troupe against raw-epoll, asio and two Python servers, every workload (about
# 9-12 minutes): tables, bench/results/<date>.json and .svg. Options, e.g.:
# make bench BENCH_ARGS="--quick" or BENCH_ARGS="--workloads pingpong --duration 3s"
bench: bench-deps build
	@scripts/bench --build-dir $(BUILD_DIR) $(BENCH_ARGS)

# TLS against plaintext on one worker: echo messages/s and server CPU per
# message, then full handshakes per second per core for ECDSA P-256 and RSA
# 2048 (docs/benchmarks.md, "TLS"). BENCH_TLS_SECONDS per measurement.
.PHONY: bench-tls
BENCH_TLS_SECONDS ?= 10
bench-tls: build
	@scripts/install-deps openssl
	@scripts/bench-tls $(BUILD_DIR)/bin $(BENCH_TLS_SECONDS)

# The Google Benchmark micro-benchmarks (ns/op); BENCH_ARGS go to the binary.
bench-micro: build
	@$(BUILD_DIR)/bin/troupe-micro-bench $(BENCH_ARGS)

# Server plus load client on loopback, then the load report.
demo: build
	@scripts/demo $(BUILD_DIR)/bin

# Redis, three echo nodes, two chat nodes and HAProxy on loopback
# (deploy/haproxy.cfg): a chat session, then echo-load --reconnect while one
# node is drained and restarted and another is killed (docs/deploy.md).
.PHONY: cluster-demo
cluster-demo: build
	@scripts/cluster-demo $(BUILD_DIR)/bin

# The Debian package of the library and programs (CPack): build/package/*.deb.
.PHONY: package
package: build
	@scripts/install-deps dpkg-dev
	@cd $(BUILD_DIR) && cpack --config CPackConfig.cmake -B package >/dev/null
	@ls $(BUILD_DIR)/package/*.deb

# The server in the foreground (Ctrl-C stops it): make run ARGS="--workers 4"
run: build
	@$(BUILD_DIR)/bin/echo-cluster $(ARGS)

clean:
	@rm -rf $(BUILD_DIR)

# Connection churn plus steady echo for DURATION (default 10m); not in `make test`.
.PHONY: soak
DURATION ?= 10m
soak: build
	@DURATION=$(DURATION) scripts/soak $(BUILD_DIR)/bin
