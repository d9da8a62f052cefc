# The same commands locally and in CI. `make run` serves the API on the embedded default
# (SQLite + in-process cache, demo data) with the server extra only; `make test` installs
# everything (all extras, the dev and bench groups) and runs every check; `make test-fast` is
# the inner loop (under a minute).
SHELL := /bin/bash
export UV_PYTHON_DOWNLOADS := never

UV := $(shell command -v uv 2>/dev/null)
ifeq ($(UV),)
UV := python3 -m uv
endif

VENV := .venv
BIN := $(VENV)/bin

.PHONY: install install-server uv run test test-fast lint typecheck pytest browser docs bench clean

uv:
	@$(UV) --version >/dev/null 2>&1 || python3 -m pip install --quiet uv || python3 -m pip install --quiet --user uv

# Everything: all extras, the dev group and the bench group (tests/bench runs the peers small);
# bytecode compiled once here, not by every process that imports (a 3 s start becomes ~1 s).
install: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml uv.lock | uv
	$(UV) sync --frozen --all-extras --all-groups --compile-bytecode --python python3
	@touch $@

# The service alone: the engine and the server extra, no dev or bench group. --inexact keeps
# what `make install` added, so switching between `make run` and `make test` installs nothing.
install-server: $(VENV)/.installed-server

$(VENV)/.installed-server: pyproject.toml uv.lock | uv
	$(UV) sync --frozen --extra server --no-dev --inexact --compile-bytecode --python python3
	@touch $@

# `make run PORT=8001` (or HOST=0.0.0.0) to serve elsewhere.
HOST ?= 127.0.0.1
PORT ?= 8000

run: install-server
	$(BIN)/ogcache serve --demo --host $(HOST) --port $(PORT)

lint: install
	$(BIN)/ruff check src tests bench support
	$(BIN)/ruff format --check src tests bench support

typecheck: install
	$(BIN)/mypy

pytest: install browser
	$(BIN)/pytest

# The dashboard's browser test drives the system Chromium; install it where we may (root with
# apt), else the test skips and says how.
browser:
	@command -v chromium >/dev/null 2>&1 || { [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null \
	  && { apt-get install -y -q chromium >/dev/null 2>&1 \
	       || { apt-get update -q >/dev/null 2>&1 && apt-get install -y -q chromium >/dev/null 2>&1; }; }; } \
	  || echo "chromium not installed: the dashboard's browser test will skip (apt-get install -y chromium)"

# The library's pages and its reference from docstrings (mkdocs.yml); --strict: no drift.
docs: install
	$(BIN)/mkdocs build --strict

test: lint typecheck docs pytest

# The inner loop, in 3 processes: the engine's tests over memory and the local Redis, and the
# services' over the local PostgreSQL + Redis. Not the slow fault tests, the stores the suite
# starts itself (Cluster, Sentinel, the Upstash gateway), SQLite, the HTTP API, migrations,
# packaging or the benchmarks: `make test` runs those.
FAST_TESTS := tests/cache tests/services tests/test_config.py tests/db/test_url.py
FAST_ARGS := -n 3 -m "not slow" -k "not cluster and not sentinel and not upstash and not sqlite" \
	-p no:schemathesis -p no:hypothesispytest

test-fast: install
	$(BIN)/ruff check src tests bench support
	$(BIN)/pytest $(FAST_ARGS) $(FAST_TESTS)

# The performance suite (needs PostgreSQL, Redis, wrk; about 15 minutes): bench/README.md.
bench: install
	$(BIN)/python -m bench suite

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache ogcache.db ogcache.db-*
