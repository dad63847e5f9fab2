# Two commands set everything up on a fresh machine: `make run` and `make test`.
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
ARGS   ?=

.PHONY: run demo test bench sim soak venv wheel-check clean upgrade-check rust-check fix-engine

# Every install takes the tested versions from the lock (build dependencies too).
LOCK   := constraints.txt
PIP    := $(PY) -m pip install --quiet -c $(LOCK) --build-constraint $(LOCK)
# What running needs (the package's dependencies) and what testing adds (the test extra).
RUN_STAMP  := $(VENV)/.installed-run
TEST_STAMP := $(VENV)/.installed-test
# The compiled core (recorder._core, built by maturin from rust/): a change reinstalls.
CORE_SRC := rust/Cargo.toml rust/Cargo.lock $(shell find rust/src -name "*.rs")
CARGO    := cargo
CRATE    := --manifest-path rust/Cargo.toml

$(VENV)/bin/python:
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet -c $(LOCK) pip

$(RUN_STAMP): pyproject.toml $(LOCK) $(CORE_SRC) | $(VENV)/bin/python
	$(PIP) -e .
	touch $(RUN_STAMP)

$(TEST_STAMP): pyproject.toml $(LOCK) $(CORE_SRC) | $(VENV)/bin/python
	$(PIP) -e '.[test]'
	touch $(TEST_STAMP) $(RUN_STAMP)

venv: $(TEST_STAMP)

## Start the recorder with the default configuration.
run: $(RUN_STAMP)
	$(VENV)/bin/recorder run $(ARGS)

## Offline tour: local exchange with faults -> capture -> audit, book, SQL (ARGS="--seconds 30").
## Leaves its archive in demo-archive/ (replaced by the next `make demo`).
DEMO_ARCHIVE ?= demo-archive
demo: $(RUN_STAMP)
	rm -rf $(DEMO_ARCHIVE)
	$(VENV)/bin/recorder demo --archive $(DEMO_ARCHIVE) $(ARGS)

## Run the whole test suite (Rust core checks, then unit, property and loopback integration tests).
test: $(TEST_STAMP) rust-check
	$(PY) -m pytest $(ARGS)

## The compiled core's own checks: formatting, lints (binding included), unit tests.
rust-check: $(TEST_STAMP)
	$(CARGO) fmt $(CRATE) --check
	PYO3_PYTHON=$(abspath $(PY)) $(CARGO) clippy $(CRATE) --locked --quiet --all-targets --all-features -- -D warnings
	$(CARGO) test $(CRATE) --locked --quiet

## The established FIX engine tests/test_fix_engine.py validates against: QuickFIX (C++) from
## Debian, pinned (docs/fix.md; needs root and apt). CI runs this before the tests.
QUICKFIX_DEB := libquickfix-dev=1.15.1+dfsg-4+b1
fix-engine:
	@dpkg -s libquickfix-dev >/dev/null 2>&1 && command -v g++ >/dev/null || { \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive \
	  apt-get install -y -qq --no-install-recommends $(QUICKFIX_DEB) g++; }

## Run the benchmark harness and print/record the figures (see BENCHMARKS.md).
bench: $(TEST_STAMP)
	$(PIP) -e '.[bench]'
	$(PY) -m benchmarks $(ARGS)

## Start the local Kraken exchange on 127.0.0.1:8787.
sim: $(RUN_STAMP)
	$(VENV)/bin/recorder sim $(ARGS)

## Chaos soak: every fault kind, kill -9, disk pressure, then archive vs truth (exit 1 on a miss).
MINUTES ?= 10
soak: $(RUN_STAMP)
	$(VENV)/bin/recorder soak --minutes $(MINUTES) $(ARGS)

## Build the wheel, install it in a clean environment outside the checkout, run it end to end.
wheel-check:
	PYTHON=$(PYTHON) ops/wheel-check.sh $(ARGS)

## Try the newest dependency versions (ignoring the lock) and report what changed and breaks.
upgrade-check:
	PYTHON=$(PYTHON) ops/upgrade-check.sh $(ARGS)

clean:
	rm -rf $(VENV) .pytest_cache .hypothesis build *.egg-info rust/target recorder/_core*.so
