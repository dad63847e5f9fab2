# Two commands set everything up on a fresh machine: `make run` and `make test`.
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed
ARGS   ?=

.PHONY: run demo test bench sim venv clean upgrade-check rust-check

LOCK   := constraints.txt
# The compiled core (recorder._core, built by maturin from rust/): a change reinstalls.
CORE_SRC := rust/Cargo.toml rust/Cargo.lock $(wildcard rust/src/*.rs)
CARGO    := cargo
CRATE    := --manifest-path rust/Cargo.toml

$(STAMP): pyproject.toml $(LOCK) $(CORE_SRC)
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet -c $(LOCK) pip
	$(PY) -m pip install --quiet -c $(LOCK) -e '.[test]'
	touch $(STAMP)

venv: $(STAMP)

## Start the recorder with the default configuration.
run: $(STAMP)
	$(VENV)/bin/recorder run $(ARGS)

## Offline tour: local exchange with faults -> capture -> audit, book, SQL (ARGS="--seconds 30").
demo: $(STAMP)
	$(VENV)/bin/recorder demo $(ARGS)

## Run the whole test suite (Rust core checks, then unit, property and loopback integration tests).
test: $(STAMP) rust-check
	$(PY) -m pytest $(ARGS)

## The compiled core's own checks: formatting, lints (binding included), unit tests.
rust-check: $(STAMP)
	$(CARGO) fmt $(CRATE) --check
	PYO3_PYTHON=$(abspath $(PY)) $(CARGO) clippy $(CRATE) --locked --quiet --all-targets --all-features -- -D warnings
	$(CARGO) test $(CRATE) --locked --quiet

## Run the benchmark harness and print/record the figures (see BENCHMARKS.md).
bench: $(STAMP)
	$(PY) -m pip install --quiet -c $(LOCK) -e '.[bench]'
	$(PY) -m benchmarks $(ARGS)

## Start the local Kraken exchange on 127.0.0.1:8787.
sim: $(STAMP)
	$(VENV)/bin/recorder sim $(ARGS)

## Chaos soak: every fault kind, kill -9, disk pressure, then archive vs truth (exit 1 on a miss).
MINUTES ?= 10
soak: $(STAMP)
	$(VENV)/bin/recorder soak --minutes $(MINUTES) $(ARGS)

## Try the newest dependency versions (ignoring the lock) and report what changed and breaks.
upgrade-check:
	PYTHON=$(PYTHON) ops/upgrade-check.sh $(ARGS)

clean:
	rm -rf $(VENV) .pytest_cache .hypothesis build *.egg-info rust/target recorder/_core*.so
