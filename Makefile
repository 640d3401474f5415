# Every target works on a fresh machine: the virtual environment and the Debian tools the
# integration tests start (prometheus, promtool, alertmanager, amtool, pushgateway) are set up
# on demand.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
DEBIAN_TOOLS := prometheus prometheus-alertmanager prometheus-pushgateway
# The headless browser the status page and report tests drive (tests/test_browser.py).
BROWSER_TOOLS := chromium chromium-driver
PYTEST_ARGS ?=
# Test processes (pytest-xdist): most integration tests wait on the servers they start
# (Prometheus scraping, rules evaluating, demos playing), so four run side by side even on
# two cores: on two cores the suite took 899 s with two workers and 627 s with three, and
# later, grown, 873 s with three and 750 s with four (the same day, one after the other). A
# file's tests stay in one process (its servers, started once per file, are not started
# twice), in the order tests/conftest.py gives the files. PYTEST_WORKERS=0 runs in one
# process.
PYTEST_WORKERS ?= 4
PYTEST_PARALLEL := -n $(PYTEST_WORKERS) --dist loadfile --no-loadscope-reorder
# A failure must be readable from CI's output alone: every failing test's name and reason
# (-rfE), short tracebacks with the captured output and logs of the test (--show-capture;
# tests/conftest.py adds the tail of every log file the test's processes wrote), the
# slowest tests, and a JUnit XML report kept beside the log that .ci/run writes.
PYTEST_REPORT := -rfE --tb=short --show-capture=all --durations=15 \
	--junitxml=.ci/logs/junit.xml
# The test processes, and the hundreds of Python processes the tests start, import the
# package from its source tree. Where bytecode caching is off (PYTHONDONTWRITEBYTECODE, as
# some CI images set it), each of them compiles every module it imports again, and each
# worker rewrites every test module's asserts: a third of the CPU of a test file that starts
# processes. The suite's runs write the caches (in __pycache__, which git ignores).
test explore unit test-lowest test-torch: export PYTHONDONTWRITEBYTECODE :=

.PHONY: test explore test-torch test-lowest unit lint demo bench generate grafana-schema pictures venv tools \
	browser clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[test]'
	touch $(STAMP)

venv: $(STAMP)

# Installs the Debian packages only when one of their binaries is missing.
tools:
	@missing=0; for b in prometheus promtool prometheus-alertmanager amtool prometheus-pushgateway; do \
	  command -v $$b >/dev/null 2>&1 || missing=1; done; \
	if [ $$missing = 1 ]; then \
	  echo "installing $(DEBIAN_TOOLS)"; \
	  if [ "$$(id -u)" = 0 ]; then SUDO=; else SUDO=sudo; fi; \
	  $$SUDO apt-get update -qq && \
	  DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq --no-install-recommends $(DEBIAN_TOOLS) >/dev/null; \
	fi

# The browser the tests (and the pictures) drive; the demo and the other targets need none.
browser:
	@missing=0; for b in chromium chromedriver; do \
	  command -v $$b >/dev/null 2>&1 || missing=1; done; \
	if [ $$missing = 1 ]; then \
	  echo "installing $(BROWSER_TOOLS)"; \
	  if [ "$$(id -u)" = 0 ]; then SUDO=; else SUDO=sudo; fi; \
	  $$SUDO apt-get update -qq && \
	  DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq --no-install-recommends $(BROWSER_TOOLS) >/dev/null; \
	fi

test: venv tools browser lint
	INFERWATCH_HYPOTHESIS_PROFILE=inferwatch-fixed \
	  $(BIN)/python -m pytest -q -p no:cacheprovider $(PYTEST_PARALLEL) $(PYTEST_REPORT) \
	  $(PYTEST_ARGS)

# The whole suite with newly drawn property-test examples (make test draws a fixed set).
explore: venv tools browser
	$(BIN)/python -m pytest -q -p no:cacheprovider $(PYTEST_PARALLEL) $(PYTEST_ARGS)

# The torch cases (the conformance matrix, call shapes, shadow inputs). TORCH_SPEC names
# the build to install; the default pin is the CPU build this machine keeps on disk (a plain
# `torch` pulls CUDA).
# transformers: a text-classification pipeline built offline (tests/test_call_shapes.py).
TORCH_SPEC ?= torch==2.13.0
TRANSFORMERS_SPEC ?= transformers==5.24.0
test-torch: venv
	$(BIN)/python -c "import torch" 2>/dev/null || $(BIN)/pip install --quiet '$(TORCH_SPEC)'
	$(BIN)/python -c "import transformers" 2>/dev/null || \
		$(BIN)/pip install --quiet '$(TRANSFORMERS_SPEC)'
	$(BIN)/python -m pytest -q -p no:cacheprovider -m torch tests/test_conformance.py \
		tests/test_call_shapes.py tests/test_shapes_edges.py tests/test_shadow_lifecycle.py \
		tests/test_async_call_objects_sparse_tensors.py tests/test_events_sparse.py

# The suite on the lowest versions pyproject.toml allows: its runtime dependencies and the
# pandas and parquet extras, each pinned at its '>=' floor (tests/lowest_constraints.py), in
# a virtual environment of its own. Not part of make test (a second whole run): run it
# when a floor moves, and before a release.
LOWEST_VENV := .venv-lowest
test-lowest: tools browser
	test -x $(LOWEST_VENV)/bin/python || $(PYTHON) -m venv $(LOWEST_VENV)
	$(LOWEST_VENV)/bin/pip install --quiet --upgrade pip
	$(PYTHON) tests/lowest_constraints.py > $(LOWEST_VENV)/constraints.txt
	$(LOWEST_VENV)/bin/pip install --quiet -c $(LOWEST_VENV)/constraints.txt -e '.[test]'
	$(LOWEST_VENV)/bin/python tests/lowest_constraints.py --check
	INFERWATCH_HYPOTHESIS_PROFILE=inferwatch-fixed \
	  $(LOWEST_VENV)/bin/python -m pytest -q -p no:cacheprovider $(PYTEST_PARALLEL) $(PYTEST_ARGS)

unit: venv
	$(BIN)/python -m pytest -q -p no:cacheprovider -m "not integration" $(PYTEST_PARALLEL) \
		$(PYTEST_REPORT) $(PYTEST_ARGS)

lint: venv
	$(BIN)/ruff check exporter tests benchmarks

generate: venv
	$(BIN)/inferwatch generate --out .
	$(BIN)/inferwatch generate --config alerts/tests/overrides/inferwatch.yaml \
		--out alerts/tests/overrides --rules-only

# Regenerates tests/schema/grafana-dashboard.schema.json from the pinned @grafana/schema
# (needs node and npm; the tests do not).
grafana-schema:
	tests/schema/build.sh

# Redraws docs/images/*.svg, the README's pictures of the dashboards, from a live demo, and
# the screenshots of the status page and a drift report, taken by the browser test.
pictures: venv tools browser
	$(BIN)/python -m inferwatch.demo.snapshot --dashboards dashboards --out docs/images
	INFERWATCH_PICTURES=1 $(BIN)/python -m pytest -q -p no:cacheprovider tests/test_browser.py

demo: venv tools
	$(BIN)/inferwatch demo

bench: venv
	$(BIN)/pip install --quiet -e '.[test,bench]'
	$(BIN)/python -m benchmarks

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache .hypothesis
