# The study's two commands: `make book` (build the study and the book) and `make test`.
# Both create .venv if missing and install torch==2.13.0 (the CPU wheel) first: an unpinned
# torch pulls GBs of CUDA wheels.
PY      := .venv/bin/python
PIP     := .venv/bin/pip
STAMP   := .venv/.installed
THREADS ?= 2

.PHONY: setup test test-fast book lab teachers lint clean

setup: $(STAMP)

# Re-installs only when pyproject.toml changes (the stamp is newer otherwise): quick when done.
$(STAMP): pyproject.toml
	test -x $(PY) || python3 -m venv .venv
	$(PIP) install --quiet torch==2.13.0
	$(PIP) install --quiet torch==2.13.0 -e ".[book,dev]"
	touch $(STAMP)

test: setup
	$(PY) -m pytest -q

test-fast: setup
	$(PY) -m pytest -q -m "not slow"

lint: setup
	.venv/bin/ruff check .

# Default teachers are committed under teachers/; `make teachers` retrains them (~15 min each).
teachers: setup
	$(PY) -m studylib.cli --threads $(THREADS) teacher --arch toy-llava --out teachers/toy-llava --overwrite
	$(PY) -m studylib.cli --threads $(THREADS) teacher --arch toy-bunny --out teachers/toy-bunny --overwrite

# Two 1-thread kernels by default (measured 1.6-1.9x faster than one 2-thread one).
# `make book PROFILE=smoke` for the CI-sized book.
book: setup
	$(PY) -m studylib.cli study --profile $(or $(PROFILE),default) --workers $(or $(WORKERS),2)

lab: setup
	$(PIP) install --quiet torch==2.13.0 -e ".[book,lab,dev]"
	.venv/bin/jupyter lab notebooks/

clean:
	rm -rf book/_build book/runs book/figures results
