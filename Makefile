# troupe: the two commands from the README are `make demo` and `make test`.
# Each installs missing Debian packages first (scripts/install-deps).

BUILD_DIR ?= build
BUILD_TYPE ?= Release
JOBS ?= $(shell nproc 2>/dev/null || echo 2)
CMAKE_FLAGS ?=

.PHONY: all deps configure build test demo run clean

all: build

deps:
	@scripts/install-deps

configure: deps
	@cmake -S . -B $(BUILD_DIR) -DCMAKE_BUILD_TYPE=$(BUILD_TYPE) $(CMAKE_FLAGS) >/dev/null

build: configure
	@cmake --build $(BUILD_DIR) -j $(JOBS)

# Every test; each integration test bounds its own time, ctest bounds each at 300 s.
test: build
	@cd $(BUILD_DIR) && ctest --output-on-failure -j $(JOBS) --timeout 300

# Server plus load client on loopback, then the load report.
demo: build
	@scripts/demo $(BUILD_DIR)/bin

# The server in the foreground (Ctrl-C stops it): make run ARGS="--workers 4"
run: build
	@$(BUILD_DIR)/bin/echo-cluster $(ARGS)

clean:
	@rm -rf $(BUILD_DIR)
