# Two commands for a newcomer: `make run` and `make test`. Both set up .venv first.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-$(shell cat requirements.txt pyproject.toml | cksum | cut -d' ' -f1)

.PHONY: run test lint fmt clean bench

$(STAMP): requirements.txt pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check -r requirements.txt
	# Puts the `greenroom` command in .venv/bin (editable: it runs this checkout's client/).
	$(PY) -m pip install --quiet --disable-pip-version-check --no-deps -e .
	rm -f $(VENV)/.installed-*
	touch $(STAMP)

BENCH_STAMP := $(VENV)/.bench-$(shell cksum < bench/requirements.txt | cut -d' ' -f1)

$(BENCH_STAMP): $(STAMP) bench/requirements.txt
	$(PY) -m pip install --quiet --disable-pip-version-check -r bench/requirements.txt
	rm -f $(VENV)/.bench-*
	touch $(BENCH_STAMP)

# The benchmark: Greenroom against Flask-SocketIO and websockets; BENCH_ARGS="--quick" for a short run.
bench: $(BENCH_STAMP)
	$(PY) -m bench $(BENCH_ARGS)

run: $(STAMP)
	$(PY) app.py

test: $(STAMP) lint
	$(PY) -m pytest $(PYTEST_ARGS)

# ruff for style; mypy type-checks the server (what and how: [tool.mypy] in pyproject.toml).
lint: $(STAMP)
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/ruff check .
	$(VENV)/bin/mypy

fmt: $(STAMP)
	$(VENV)/bin/ruff format .
	$(VENV)/bin/ruff check --fix .

clean:
	rm -rf $(VENV) var .pytest_cache .ruff_cache .mypy_cache
