# OpenTSM front door. Every target first makes sure the Debian packages the
# project needs are installed (scripts/deps.sh, silent when nothing is missing).
#
#   make demo          build and run the main scenario
#   make test          build and run the whole suite twice: normal (gcc) and ASan+UBSan (clang)
#   make bench         build and run every benchmark; make bench-NAME runs one
#   make fuzz          build the libFuzzer targets and run each FUZZ_TIME seconds
#   make asan          build and test with AddressSanitizer + UndefinedBehaviorSanitizer only
#   make format-check  check formatting with clang-format
#   make format        reformat the sources in place

SHELL := /bin/bash
.SHELLFLAGS := -eu -o pipefail -c

JOBS      ?= $(shell nproc 2>/dev/null || echo 2)
BUILD     ?= build
ASAN      ?= build-asan
FUZZBUILD ?= build-fuzz
BENCHBUILD ?= build-bench
FUZZ_TIME ?= 60
CMAKE     ?= cmake
CTEST     ?= ctest

SOURCES = $(shell git ls-files -- '*.c' '*.h' 2>/dev/null || find src tests fuzz bench -name '*.[ch]')
# bench/pay_clients.c is run by bench/pay.sh (it needs tsmd and the back ends),
# bench/provision_sp.c by bench/provision.sh.
BENCHES = $(filter-out pay_clients provision_sp,$(patsubst bench/%.c,%,$(wildcard bench/*.c)))
BENCH_SCRIPTS = $(patsubst bench/%.sh,%,$(wildcard bench/*.sh))
FUZZERS = $(patsubst fuzz/fuzz_%.c,%,$(wildcard fuzz/fuzz_*.c))

.PHONY: all deps build demo demo-scp03 test unit asan bench fuzz format format-check clean help \
        $(addprefix bench-,$(BENCHES)) $(addprefix bench-,$(BENCH_SCRIPTS))

all: build

help:
	@sed -n '2,12p' Makefile | sed 's/^# \{0,1\}//'

deps:
	@bash scripts/deps.sh

build: deps
	@$(CMAKE) -S . -B $(BUILD) -DCMAKE_BUILD_TYPE=RelWithDebInfo -DOT_WERROR=ON >/dev/null
	@$(CMAKE) --build $(BUILD) -j $(JOBS)

# The virtual SE end to end: created from a profile, seen through PC/SC,
# managed over SCP03 and used for a payment (scripts/demo.sh); then tsmd over
# TLS with a local CA: SE import, lookup by MSISDN, SD visibility, audit
# (scripts/demo_tsmd.sh); payments (scripts/demo_pay.sh); over the air, a phone
# with its SEs and se-agent, jobs online and offline (scripts/demo_ota.sh); a
# bank provisioning its payment service on a phone's eSE through the central
# TSM, then paying with it (scripts/demo_tsm.sh); a bank managing its own
# application under Delegated Management with the TSM's tokens and receipts,
# and a transit operator's TSM handed its own SD (scripts/demo_tsm_dm.sh); a
# phone lost while on and one stolen while off, their cards destroyed
# (scripts/demo_cms.sh); a card used illegally, destroyed by supervision
# (scripts/demo_superv.sh). `make demo-scp03` shows only the host library's SCP03
# session with an in-process card.
demo: build
	@bash scripts/demo.sh $(BUILD)
	@bash scripts/demo_tsmd.sh $(BUILD)
	@bash scripts/demo_pay.sh $(BUILD)
	@bash scripts/demo_ota.sh $(BUILD)
	@bash scripts/demo_tsm.sh $(BUILD)
	@bash scripts/demo_tsm_dm.sh $(BUILD)
	@bash scripts/demo_cms.sh $(BUILD)
	@bash scripts/demo_superv.sh $(BUILD)
	@bash scripts/demo_console.sh $(BUILD)

demo-scp03: build
	@./$(BUILD)/src/bin/ot-demo

# The normal run first, then the sanitized one; the last line is ctest's summary.
test: build
	@$(CTEST) --test-dir $(BUILD) -j $(JOBS) --output-on-failure
	@$(MAKE) --no-print-directory asan

asan: deps
	@CC=clang $(CMAKE) -S . -B $(ASAN) -DCMAKE_BUILD_TYPE=Debug -DOT_SANITIZE=ON -DOT_BENCH=OFF \
	    -DOT_WERROR=ON >/dev/null
	@$(CMAKE) --build $(ASAN) -j $(JOBS)
	@ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 UBSAN_OPTIONS=print_stacktrace=1 \
	    $(CTEST) --test-dir $(ASAN) -j $(JOBS) --output-on-failure

# Benchmarks are built in Release: bench/NAME.c becomes bench_NAME; a
# bench/NAME.sh script gets the build directory in OT_BUILD.
bench-build: deps
	@$(CMAKE) -S . -B $(BENCHBUILD) -DCMAKE_BUILD_TYPE=Release -DOT_TESTS=OFF -DOT_WERROR=ON >/dev/null
	@$(CMAKE) --build $(BENCHBUILD) -j $(JOBS)

bench: bench-build
	@for b in $(BENCHES); do echo "== bench/$$b"; ./$(BENCHBUILD)/bench/bench_$$b; done
	@for b in $(BENCH_SCRIPTS); do echo "== bench/$$b"; OT_BUILD=$(BENCHBUILD) bash bench/$$b.sh; done

$(addprefix bench-,$(BENCHES)): bench-%: bench-build
	@./$(BENCHBUILD)/bench/bench_$*

$(addprefix bench-,$(BENCH_SCRIPTS)): bench-%: bench-build
	@OT_BUILD=$(BENCHBUILD) bash bench/$*.sh

# Each target runs FUZZ_TIME seconds on a scratch copy of its committed corpus;
# any crash, leak or sanitizer report fails the target and leaves the input in
# fuzz-work/<name>/.
fuzz: deps
	@CC=clang $(CMAKE) -S . -B $(FUZZBUILD) -DCMAKE_BUILD_TYPE=RelWithDebInfo -DOT_FUZZ=ON \
	    -DOT_TESTS=OFF -DOT_BENCH=OFF -DOT_WERROR=ON >/dev/null
	@$(CMAKE) --build $(FUZZBUILD) -j $(JOBS) --target $(addprefix fuzz_,$(FUZZERS))
	@for f in $(FUZZERS); do \
	    mkdir -p fuzz-work/$$f/corpus; \
	    echo "== fuzz_$$f for $(FUZZ_TIME) s"; \
	    (cd fuzz-work/$$f && ../../$(FUZZBUILD)/fuzz/fuzz_$$f -max_total_time=$(FUZZ_TIME) \
	        -print_final_stats=1 corpus ../../fuzz/corpus/$$f 2>fuzz.log) \
	        || { tail -40 fuzz-work/$$f/fuzz.log; echo "fuzz_$$f: FINDING (see fuzz-work/$$f)"; exit 1; }; \
	    grep -E '^stat::number_of_executed_units' fuzz-work/$$f/fuzz.log | sed "s/^/fuzz_$$f /"; \
	done
	@echo "fuzz: all targets ran $(FUZZ_TIME) s without a finding"

format-check: deps
	@clang-format --dry-run --Werror $(SOURCES)
	@echo "format-check: ok"

format: deps
	@clang-format -i $(SOURCES)

clean:
	rm -rf $(BUILD) $(ASAN) $(FUZZBUILD) $(BENCHBUILD) fuzz-work
