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

# `make book PROFILE=smoke WORKERS=2` for the CI-sized book on two 1-thread kernels.
book: setup
	$(PY) -m studylib.cli study --profile $(or $(PROFILE),default) --workers $(or $(WORKERS),1)

lab: setup
	$(PIP) install --quiet torch==2.13.0 -e ".[book,lab,dev]"
	.venv/bin/jupyter lab notebooks/

clean:
	rm -rf book/_build book/runs book/figures results
