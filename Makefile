# Two entry points for a fresh machine: `make demo` and `make test` (both build .venv first).
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test lint bench bench-quick load clean

$(STAMP): pyproject.toml
	$(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[dev]'
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/python -m blit_client.demo

test: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/pytest

lint: $(STAMP)
	$(BIN)/ruff check .

bench: $(STAMP)
	$(BIN)/python -m loadtests.bench --tuning --scale --scratch-fs 60

bench-quick: $(STAMP)
	$(BIN)/python -m loadtests.bench --quick

clean:
	rm -rf $(VENV) *.egg-info .pytest_cache .ruff_cache

load: $(STAMP)
	$(BIN)/python -m loadtests.load --clients 16 --seconds 60
