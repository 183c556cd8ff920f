# The README's two commands: `make report` and `make test`. Both set up .venv first.
SHELL := /bin/bash
PYTHON_BOOTSTRAP ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
PY := $(VENV)/bin/python
SCALE ?= small
SEED ?= 42
RUN_DIR ?= outputs/report
BOOK_DIR ?= outputs/book
# pytest options, e.g. `make test PYTEST_ARGS="-m 'not slow'"`
PYTEST_ARGS ?=

.PHONY: report test bench bench-regimes bench-full bench-ope bench-stress lock vendor-js clean-outputs help
help:
	@echo "make report   set up .venv, run every notebook at SCALE=$(SCALE), build the book"
	@echo "make test     set up .venv, check format and lint (ruff), run the tests"
	@echo "make bench    print the benchmarks' figures"
	@echo "make bench-regimes  rerun the pipeline in worlds with weak and strong temporal effects (about 1.5 h)"
	@echo "make bench-full     the headline metrics at full scale, 38k HCPs (about 25 min)"
	@echo "make bench-ope      chapter 9's off-policy estimates in the worlds of several seeds (about 45 min)"
	@echo "make bench-stress   the stress preset (100k HCPs) through synthesis, scoring and the plan (about 20 min, 15 GB)"

# Reinstall whenever the pins change; the stamp records what was installed.
$(VENV)/.installed: requirements.txt constraints.txt pyproject.toml
	@$(PYTHON_BOOTSTRAP) -c 'import sys; sys.exit(0 if sys.version_info[:2] == (3, 11) else "Python 3.11 is required, found " + sys.version.split()[0])'
	@test -x $(PY) || $(PYTHON_BOOTSTRAP) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade "pip>=24"
	$(PY) -m pip install --quiet -r requirements.txt -c constraints.txt
	$(PY) -m pip install --quiet --no-deps -e .
	@touch $@

report: $(VENV)/.installed
	@start=$$(date +%s); \
	$(PY) -m hcp_lib run --scale $(SCALE) --seed $(SEED) --out $(RUN_DIR) && \
	$(PY) -m hcp_lib book --run $(RUN_DIR) --out $(BOOK_DIR) && \
	echo "report done in $$(( $$(date +%s) - start )) s (set-up excluded); open $(abspath $(BOOK_DIR))/_build/html/index.html"

# The browser test needs Debian's Chromium and playwright-core (npm); setup.sh installs them.
test: $(VENV)/.installed
	$(PY) -m ruff format --check .
	$(PY) -m ruff check .
	bash tests/browser/setup.sh
	$(PY) -m pytest $(PYTEST_ARGS)

# Figures, not tests: time and memory per stage. The hybrid and evaluation benchmarks
# read a run folder (RUN_DIR, by default the report's: `make report` first).
bench: $(VENV)/.installed
	$(PY) benchmarks/bench_synth.py tiny small full
	$(PY) benchmarks/bench_topics.py --scale small
	$(PY) benchmarks/bench_cf.py --scale small
	$(PY) benchmarks/bench_cf.py --scale full
	$(PY) benchmarks/bench_plan.py --sizes 200 3500 38000
	@test -f $(RUN_DIR)/manifest.json || { echo "bench: no run in $(RUN_DIR); run make report first"; exit 1; }
	$(PY) benchmarks/bench_hybrid.py --run $(RUN_DIR) --scale $(SCALE)
	$(PY) benchmarks/bench_evaluate.py $(RUN_DIR)
	$(PY) -m hcp_lib run --scale tiny --seed $(SEED) --out outputs/bench-tiny --no-progress
	$(PY) benchmarks/bench_growth.py --run tiny=outputs/bench-tiny --run $(SCALE)=$(RUN_DIR) --full benchmarks/results/full.json

# Where the sequence earns its place: the whole pipeline in three worlds (not part of the report's
# time budget). Writes benchmarks/results/regimes.json and the book page book/regimes.md; commit them.
bench-regimes: $(VENV)/.installed
	$(PY) benchmarks/bench_regimes.py --scale $(SCALE) --seed $(SEED)

# Chapter 9 over several worlds (seeds 42, 1, 2; the report's run is reused for 42). Writes
# benchmarks/results/ope.json and the book page book/ope_seeds.md; commit them.
bench-ope: $(VENV)/.installed
	$(PY) benchmarks/bench_ope.py --scale $(SCALE) --run 42=$(RUN_DIR)

# The headline metrics at full scale (38k HCPs); writes benchmarks/results/full.json; commit it.
bench-full: $(VENV)/.installed
	$(PY) benchmarks/bench_full.py --seed $(SEED)

# The stress preset (100,000 HCPs, and 10,000 first for each step's growth) through synthesis,
# scoring and the week's plan, niced; writes benchmarks/results/stress.json and re-renders the book
# page book/scale_out.md from it and growth.json; commit them. Peak memory about 15 GB (the scoring step).
bench-stress: $(VENV)/.installed
	nice -n 10 $(PY) benchmarks/bench_stress.py --out outputs/bench-stress --reference-hcps 10000
	$(PY) benchmarks/bench_growth.py --page-only

# Regenerate constraints.txt (every transitive version) from the current .venv.
lock: $(VENV)/.installed
	$(PY) -m pip freeze --exclude-editable > constraints.txt

# Refresh the widget JavaScript the book ships (book/_widgets_js/) from package-lock.json.
vendor-js:
	npm ci --no-audit --no-fund --ignore-scripts
	cp node_modules/requirejs/require.js node_modules/@jupyter-widgets/html-manager/dist/embed-amd.js book/_widgets_js/
	cp node_modules/@jupyter-widgets/html-manager/dist/*.woff node_modules/@jupyter-widgets/html-manager/dist/*.woff2 book/_widgets_js/
	cp node_modules/@jupyter-widgets/html-manager/dist/embed.js.LICENSE.txt book/_widgets_js/embed-amd.js.LICENSE.txt

clean-outputs:
	rm -rf outputs/report outputs/book
