# Two commands for a new user: `make demo` and `make test`. Both create .venv and install what is
# missing; a stamp file (named after a checksum of pyproject.toml, requirements-extra.txt and
# EXTRAS) makes later runs skip pip entirely until one of those changes.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
# optional-dependency groups of pyproject.toml installed into .venv (e.g. `dev,tracr`)
EXTRAS ?= dev,tracr,ray,notebook
STAMP := $(VENV)/.installed-$(shell (cat pyproject.toml requirements-extra.txt; echo '$(EXTRAS)') 2>/dev/null | cksum | cut -d' ' -f1)
PIP := $(BIN)/python -m pip install -q --disable-pip-version-check

.PHONY: install demo test test-fast bench lint clean

install: $(STAMP)

$(STAMP): pyproject.toml requirements-extra.txt
	@test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(PIP) -e '.[$(EXTRAS)]'
	$(PIP) --no-deps -r requirements-extra.txt
	@rm -f $(VENV)/.installed-* && touch $@

demo: install
	$(BIN)/subcircuit demo

# the import-linter contracts of pyproject.toml (the layers of docs/index.md), on this tree's src/
LINT_IMPORTS := PYTHONPATH=src $(BIN)/lint-imports --no-cache --no-logo

test: install
	$(LINT_IMPORTS)
	$(BIN)/python -m pytest -q

test-fast: install
	$(LINT_IMPORTS)
	$(BIN)/python -m pytest -q -m "not slow"

bench: install
	$(BIN)/python benchmarks/run.py

lint: install
	$(BIN)/ruff check .
	$(LINT_IMPORTS)

clean:
	rm -rf $(VENV) build *.egg-info src/*.egg-info
