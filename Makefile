# The README's two commands: `make demo` (bring the lab up) and `make test` (run every test).
VENV ?= .venv
PYTEST_ARGS ?=

.PHONY: setup demo down test unit lint bench

setup:
	@bash scripts/setup.sh

demo: setup
	$(VENV)/bin/cihub lab up

down: setup
	$(VENV)/bin/cihub lab down

test: setup
	$(VENV)/bin/pytest $(PYTEST_ARGS)

unit: setup
	$(VENV)/bin/pytest -m "not integration" $(PYTEST_ARGS)

lint: setup
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy

bench: setup
	$(VENV)/bin/python bench/lab_startup.py
	$(VENV)/bin/python bench/telemetry.py --size 256M
	$(VENV)/bin/python bench/tlog.py
	$(VENV)/bin/python bench/dual_build.py
