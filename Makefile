# The README's two commands: `make demo` (the lab up, then a release of the sample subject) and
# `make test` (run every test).
VENV ?= .venv
PYTEST_ARGS ?=
DEMO_SCENARIO ?= scenarios/release/sample.yaml
DEMO_EVIDENCE ?= evidence
# Unit tests run on pytest-xdist workers (no unit test starts a lab or shares a path or port).
UNIT_WORKERS ?= 2
# The integration tests and scenarios run on xdist workers, one lab per worker (5-6 min here
# against ~15 serial); INTEGRATION_WORKERS=0 runs them serially against one lab.
INTEGRATION_WORKERS ?= 2

.PHONY: setup demo down test unit lint bench bench-tools

setup:
	@bash scripts/setup.sh

# The lab stays up (a second `make demo` reuses it and its cached images); the release drill
# ends with its verdict, the gate's reasons and the packed bundle's path and digest. The release
# names the lab `lab up` brought up (this checkout's default), so other labs of yours don't matter.
DEMO_LAB_NAME = $(VENV)/bin/python -c 'from lab.labels import default_lab_name; print(default_lab_name())'
demo: setup
	$(VENV)/bin/cihub lab up
	$(VENV)/bin/cihub run release --lab "$$($(DEMO_LAB_NAME))" --scenario $(DEMO_SCENARIO) \
		--evidence-dir $(DEMO_EVIDENCE)

# Removes this checkout's demo lab only (`cihub lab down` removes every lab you brought up).
down: setup
	@lab="$$($(DEMO_LAB_NAME))"; \
	if $(VENV)/bin/cihub lab status --json | grep -q "\"$$lab\""; then \
	  $(VENV)/bin/cihub lab down --lab "$$lab"; \
	else echo "down: no lab $$lab to remove" >&2; fi

# Everything: the unit tests on UNIT_WORKERS xdist workers, then the scenarios and integration
# tests on INTEGRATION_WORKERS, each worker with its own lab (the CLI/pytest record comparison
# reuses a scenario's record when its worker ran it, and runs the scenario itself otherwise).
test: setup
	$(VENV)/bin/pytest -m "not integration" -n $(UNIT_WORKERS) $(PYTEST_ARGS)
	$(VENV)/bin/pytest -m integration -n $(INTEGRATION_WORKERS) $(PYTEST_ARGS)

unit: setup
	$(VENV)/bin/cihub policy test
	$(VENV)/bin/pytest -m "not integration" -n $(UNIT_WORKERS) $(PYTEST_ARGS)

lint: setup
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy

# The peers the benches compare against: reprotest (with disorderfs and faketime for its
# variations) from Debian, on the host PATH where bench/dual_build.py runs it, and the sample
# subjects' toolchains it builds them with there.
BENCH_APT = reprotest disorderfs faketime python3-build python3-setuptools python3-wheel gcc make
bench-tools:
	@missing=""; for p in $(BENCH_APT); do dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	if [ -n "$$missing" ]; then \
	  sudo=""; [ "$$(id -u)" -eq 0 ] || sudo=sudo; \
	  echo "bench: installing$$missing" >&2; \
	  $$sudo apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$sudo apt-get install -y -qq --no-install-recommends $$missing >/dev/null; \
	fi

bench: setup bench-tools
	$(VENV)/bin/python bench/lab_startup.py
	$(VENV)/bin/python bench/telemetry.py --size 256M
	$(VENV)/bin/python bench/tlog.py
	$(VENV)/bin/python bench/dual_build.py
	$(VENV)/bin/python bench/scale.py
	$(VENV)/bin/python bench/release.py
