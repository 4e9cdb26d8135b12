# Two commands for a newcomer: `make run` and `make test`. Both set up .venv first.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-$(shell cat requirements.txt pyproject.toml | cksum | cut -d' ' -f1)

.PHONY: run serve test lint fmt clean bench

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

# The Node `ws` baseline's own folder, from its lockfile; npm ci writes node_modules/.package-lock.json.
# Without node or npm (or when npm ci fails) it says so and bench skips that baseline; this
# recipe then runs again next time, so installing Node later is enough.
NODE_WS := bench/baselines/node_ws
NODE_WS_STAMP := $(NODE_WS)/node_modules/.package-lock.json

$(NODE_WS_STAMP): $(NODE_WS)/package-lock.json
	@if command -v node >/dev/null 2>&1 && command -v npm >/dev/null 2>&1; then \
		npm ci --prefix $(NODE_WS) --no-audit --no-fund --loglevel=error >/dev/null \
			|| echo "npm ci failed: bench will skip the node-ws baseline"; \
	else \
		echo "node or npm not found: bench will skip the node-ws baseline"; \
	fi

# The benchmark: Greenroom against Flask-SocketIO, websockets and Node's ws; BENCH_ARGS="--quick" for a short run.
bench: $(BENCH_STAMP) $(NODE_WS_STAMP)
	$(PY) -m bench $(BENCH_ARGS)

run: $(STAMP)
	$(PY) app.py

# gunicorn as a deployment runs it: the Procfile's web: command, read from the Procfile
# (never a copy of it), with .venv/bin first on the PATH. PORT=9000 make serve, etc.
serve: $(STAMP)
	PATH="$(CURDIR)/$(VENV)/bin:$$PATH" exec bash -c "exec $$(sed -n 's/^web: *//p' Procfile)"

# Two pytest workers (pytest-xdist), each a whole test file at a time: most of a test's
# time is a server starting or a deadline running out, so two halve the wall time even on
# two cores. PYTEST_ARGS="-n 0" runs everything in one process.
test: $(STAMP) lint
	$(PY) -m pytest -n 2 --dist loadfile $(PYTEST_ARGS)

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
