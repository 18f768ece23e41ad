# The README's two commands: `make demo` (the lab up, then a release of the sample subject) and
# `make test` (run every test).
VENV ?= .venv
PYTEST_ARGS ?=
DEMO_SCENARIO ?= scenarios/release/sample.yaml
DEMO_EVIDENCE ?= evidence

.PHONY: setup demo down test unit lint bench

setup:
	@bash scripts/setup.sh

# The lab stays up (a second `make demo` reuses it and its cached images); the release drill
# ends with its verdict, the gate's reasons and the packed bundle's path and digest.
demo: setup
	$(VENV)/bin/cihub lab up
	$(VENV)/bin/cihub run release --scenario $(DEMO_SCENARIO) --evidence-dir $(DEMO_EVIDENCE)

down: setup
	$(VENV)/bin/cihub lab down

test: setup
	$(VENV)/bin/pytest $(PYTEST_ARGS)

unit: setup
	$(VENV)/bin/cihub policy test
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
	$(VENV)/bin/python bench/release.py
