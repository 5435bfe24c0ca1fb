# Two commands: `make run` starts the whole system, `make test` runs the suite.
# Both create .venv and install what they need on a fresh clone.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: run test bench lint schema deploy demo clean debian-packages ha

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

# Debian's PostgreSQL 15 (the major version Supabase runs), redis-server and nginx: the
# tests start their own instances of them under temp dirs (tests/support/debian.py).
DEBIAN_BINARIES := /usr/lib/postgresql/15/bin/initdb /usr/bin/redis-server /usr/sbin/nginx

debian-packages:
	@for f in $(DEBIAN_BINARIES); do test -x $$f || missing=1; done; \
	if [ -n "$$missing" ]; then \
		echo "installing Debian's postgresql-15, redis-server and nginx for the tests…"; \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq \
			postgresql-15 redis-server nginx >/dev/null; \
	fi

test: $(STAMP) $(CHROMIUM) lint debian-packages
	$(BIN)/python -m pytest

# Prefect in HA mode on this machine (Redis, two API replicas behind nginx, services apart):
# one replica is killed mid-traffic; the test prints what it measured as one JSON line.
ha: $(STAMP) debian-packages
	$(BIN)/python -m pytest tests/e2e/test_ha.py -q -s

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
