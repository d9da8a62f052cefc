# The same commands locally and in CI. `make run` serves the API on the embedded default
# (SQLite + in-process cache, demo data); `make test` installs everything and runs every check.
SHELL := /bin/bash
export UV_PYTHON_DOWNLOADS := never

UV := $(shell command -v uv 2>/dev/null)
ifeq ($(UV),)
UV := python3 -m uv
endif

VENV := .venv
BIN := $(VENV)/bin

.PHONY: install run test lint typecheck pytest docs bench clean

install: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml uv.lock
	@$(UV) --version >/dev/null 2>&1 || python3 -m pip install --quiet uv || python3 -m pip install --quiet --user uv
	$(UV) sync --frozen --all-groups --python python3
	@touch $@

run: install
	$(BIN)/ogcache serve --demo

lint: install
	$(BIN)/ruff check src tests
	$(BIN)/ruff format --check src tests

typecheck: install
	$(BIN)/mypy

pytest: install
	$(BIN)/pytest

# The library's pages and its reference from docstrings (mkdocs.yml); --strict: no drift.
docs: install
	$(BIN)/mkdocs build --strict

test: lint typecheck docs pytest

# The performance suite (needs PostgreSQL, Redis, wrk; about 15 minutes): bench/README.md.
bench: install
	$(BIN)/python -m bench suite

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache ogcache.db ogcache.db-*
