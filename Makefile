# needlecare: `make run` starts everything, `make test` runs every test. Both create the venv first.
PYTHON ?= python3
# The checkout this Makefile belongs to (also when make is run through a link to it, or with -f).
ROOT   := $(dir $(realpath $(firstword $(MAKEFILE_LIST))))
VENV   ?= .venv
BIN     = $(VENV)/bin
STAMP   = $(VENV)/.installed-stamp

.PHONY: run test test-fast test-faults lint bench demo clean help

help:
	@echo "make run    start the whole system on 127.0.0.1 (web :8000, Prefect :4200, SMTP capture :1025)"
	@echo "make test   run the test suite (unit, SQLite and PostgreSQL, end-to-end on real parts)"
	@echo "make test-faults  only the fault tests (also part of make test), printing one line per fault"
	@echo "make lint   ruff and mypy"
	@echo "make bench  benchmarks (figures go in the README)"
	@echo "make demo   write a clinic's year of synthetic history into demo-clinic (safe beside make run; minutes)"

$(STAMP): $(ROOT)pyproject.toml $(ROOT)requirements.lock
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --disable-pip-version-check --upgrade pip
	$(BIN)/pip install -q --disable-pip-version-check -c $(ROOT)requirements.lock -e "$(ROOT)[dev]"
	@touch $(STAMP)

run: $(STAMP)
	$(BIN)/needlecare run

test: $(STAMP)
	$(BIN)/python -m pytest

test-faults: $(STAMP)
	$(BIN)/python -m pytest -m faults -s

test-fast: $(STAMP)
	$(BIN)/python -m pytest -m "not e2e"

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/mypy

bench: $(STAMP)
	$(BIN)/python -m bench.event_to_email

demo: $(STAMP)
	$(BIN)/needlecare demo

clean:
	rm -rf var test-output .pytest_cache .mypy_cache .ruff_cache
