# Two commands: `make run` starts the whole system, `make test` runs the suite.
# Both create .venv and install what they need on a fresh clone.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: run test bench lint schema deploy demo clean

# The browser test drives Debian's Chromium (never a downloaded browser).
CHROMIUM := /usr/bin/chromium

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

run: $(STAMP)
	$(BIN)/taskflow-jobs up

$(CHROMIUM):
	@echo "installing Debian's chromium for the browser test…"
	apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null

test: $(STAMP) $(CHROMIUM) lint
	$(BIN)/python -m pytest

bench: $(STAMP)
	@for f in bench/[!_]*.py; do echo "== $$f"; $(BIN)/python $$f || exit 1; done

# style, formatting, the one-way import contract (pyproject.toml) and types
lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/lint-imports
	$(BIN)/mypy

schema: $(STAMP)
	$(BIN)/taskflow-jobs schema --write

deploy: $(STAMP)
	$(BIN)/taskflow-jobs deploy

demo: $(STAMP)
	$(BIN)/taskflow-jobs demo

clean:
	rm -rf $(VENV) .data
