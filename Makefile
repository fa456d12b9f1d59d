# `make demo` and `make test` work on a fresh machine: the .venv is created on first use.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test install bench clean

$(STAMP): pyproject.toml
	test -d $(VENV) || $(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e ".[dev,distributed]"
	$(BIN)/python -m sim.kernels --compile-all
	touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	$(BIN)/proxitrace sweep --preset lang-son --scale 0.01 --days 3 --replicates 4 --out out/demo

test: $(STAMP)
	$(BIN)/python -m pytest -q

bench: $(STAMP)
	$(BIN)/python -m benchmarks --json out/bench.json

clean:
	rm -rf $(VENV) out build *.egg-info
