# Two commands do all set-up: `make demo` and `make test` (each builds .venv first).
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
PIP := $(VENV)/bin/pip
STAMP := $(VENV)/.installed

.PHONY: venv demo test test-fast test-thorough bench clean browser screenshots

venv: $(STAMP)

$(STAMP): pyproject.toml requirements/base.txt requirements/lava.txt requirements/constraints.txt \
		requirements/clients.txt requirements/clients-deps.txt
	$(PYTHON) -m venv $(VENV)
	$(PIP) install -q -c requirements/constraints.txt -r requirements/base.txt
	$(PIP) install -q -c requirements/constraints.txt -r requirements/clients-deps.txt
	$(PIP) install -q -c requirements/constraints.txt --no-deps -r requirements/clients.txt
	$(PIP) install -q --no-deps --ignore-requires-python -r requirements/lava.txt
	$(PIP) install -q --no-deps -e .
	$(PY) -c "import snncompile.backends.lava.run as lb; lb.require_lava()"
	touch $(STAMP)

demo: $(STAMP)
	$(PY) examples/demo.py
	$(PY) examples/attention_demo.py
	$(PY) examples/sdnn_demo.py

# Headless Chromium (Debian's package) for tests/test_report_html.py; installed once. If
# it cannot be installed (no root, no apt), the browser test says so and is skipped.
browser:
	@command -v chromium >/dev/null 2>&1 || (echo "installing chromium (apt-get)" && \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq \
		chromium >/dev/null) || echo "chromium could not be installed; the browser test" \
		"will be skipped"

# Test files are spread over XDIST_WORKERS processes (pytest-xdist), whole files to one
# worker so that module- and session-scoped fixtures are built once per worker; every test
# writes under its own tmp_path. `make test XDIST_WORKERS=0` runs in one process.
XDIST_WORKERS ?= 2
XDIST := -n $(XDIST_WORKERS) --dist loadfile

test: $(STAMP) browser
	$(PY) -m pytest tests $(XDIST)

# Ten times the examples of every property (hypothesis) test: tests/hypothesis_profile.py.
test-thorough: $(STAMP) browser
	SNNCOMPILE_HYPOTHESIS=thorough $(PY) -m pytest tests $(XDIST)

test-fast: $(STAMP)
	$(PY) -m pytest tests $(XDIST) -m "not lava and not slow"

# README screenshots (docs/*.png) from `snncompile report` pages.
screenshots: $(STAMP) browser
	$(PY) examples/screenshots.py

bench: $(STAMP)
	$(PY) bench/bench_simulator.py
	$(PY) bench/bench_simulator.py --neuron sdnn
	$(PY) bench/bench_mapping.py
	$(PY) bench/bench_compile.py
	$(PY) bench/bench_verify.py
	$(PY) bench/validate_published.py

clean:
	rm -rf $(VENV) build *.egg-info
