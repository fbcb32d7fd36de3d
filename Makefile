# Thin wrapper around CMake. Every target installs missing Debian packages
# (scripts/install-deps), configures and builds first.
#
#   make demo    build, then run the demo on the embedded broker
#   make test    build and run every test (ctest)
#   make test-quick  the unit tests only (ctest -L quick): seconds
#   make run     build and start the daemon with the defaults
#   make bench   build, then issue #15's figures in one table (docs/bench.md; about 3 min,
#                plus 3 the first time for the fleet; BENCH_QUICK=1: under 1 min)
#   make bench-broker  what the broker plugin costs: connects and publishes, with and without
#   make bench-journal what the device journal costs: broker CPU, end-to-end and catch-up rate
#   make bench-retention the database under retention 1h: file size over time, ingest rate
#   make bench-console the web console on 10,000 devices and 100,000 points: API and page times
#   make chaos   fault injection with reconciliation (docs/chaos.md): kill -9 of the broker,
#                daemon and worker, backlog, disk full; CHAOS="broker dups" runs some
#   make asan    build with AddressSanitizer/UBSan into build-asan and run the tests
#   make fuzz    build the libFuzzer targets with clang into build-fuzz and run each
#                for FUZZ_SECONDS (default 60); make test runs them for 10 s each

BUILD ?= build
CMAKE_FLAGS ?= -DCMAKE_BUILD_TYPE=RelWithDebInfo
MAKEFLAGS += --no-print-directory
JOBS ?= $(shell nproc 2>/dev/null || echo 2)

.PHONY: all deps build demo test test-quick run bench bench-broker bench-journal bench-retention bench-console chaos asan fuzz clean

all: build

deps:
	@./scripts/install-deps

$(BUILD)/CMakeCache.txt: | deps
	cmake -S . -B $(BUILD) $(CMAKE_FLAGS)

build: deps $(BUILD)/CMakeCache.txt
	cmake --build $(BUILD) -j $(JOBS)

demo: build
	./scripts/demo $(BUILD)

test: build
	cd $(BUILD) && ctest --output-on-failure -j $(JOBS)

test-quick: build
	cd $(BUILD) && ctest --output-on-failure -j $(JOBS) -L quick

run: build
	./$(BUILD)/sealpipe run

bench: build
	./scripts/bench $(BUILD)

bench-broker: build
	./scripts/bench-broker $(BUILD)

bench-journal: build
	./scripts/bench-journal $(BUILD)

bench-retention: build
	./scripts/bench-retention $(BUILD)

bench-console: build
	./scripts/bench-console $(BUILD)

chaos: build
	./scripts/chaos $(BUILD) $(CHAOS)

asan:
	$(MAKE) test BUILD=build-asan CMAKE_FLAGS="-DCMAKE_BUILD_TYPE=Debug -DSEALPIPE_SANITIZE=ON"

fuzz:
	./scripts/fuzz

clean:
	rm -rf $(BUILD) build-asan build-fuzz
