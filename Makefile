# make run: the demo (no cluster needed). make test: the whole test suite.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin

.PHONY: run test venv bench stress orphans clean

$(BIN)/jobmon: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[test]'
	touch $@

venv: $(BIN)/jobmon

run: venv
	$(BIN)/jobmon demo

test: venv
	$(BIN)/python -m pytest

bench: venv
	$(BIN)/python bench/bench.py --write docs/performance.md
	cat docs/performance.md

stress: venv
	$(BIN)/python bench/stress.py

orphans: venv
	$(BIN)/python bench/orphans.py --runs 30

clean:
	rm -rf $(VENV) .pytest_cache
