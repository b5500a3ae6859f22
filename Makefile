# The study's two commands: `make book` (build the study and the book) and `make test`.
# Both create .venv if missing and install torch==2.13.0 (the CPU wheel) first: an unpinned
# torch pulls GBs of CUDA wheels.
PY      := .venv/bin/python
PIP     := .venv/bin/pip
STAMP   := .venv/.installed

.PHONY: setup test test-fast book lab teachers lint clean lmms-env lmms-check

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

# Default teachers are committed under teachers/; `make teachers` retrains them (~10 min each)
# with 1 thread, as committed: another thread count gives other (equally good) weights.
teachers: setup
	$(PY) -m studylib.cli --threads 1 teacher --arch toy-llava --out teachers/toy-llava --overwrite
	$(PY) -m studylib.cli --threads 1 teacher --arch toy-bunny --out teachers/toy-bunny --overwrite
	$(PY) -m studylib.cli --threads 1 teacher --arch toy-internvl --out teachers/toy-internvl --overwrite

# Two 1-thread kernels by default (measured 1.6-1.9x faster than one 2-thread one).
# `make book PROFILE=smoke` for the CI-sized book.
book: setup
	$(PY) -m studylib.cli study --profile $(or $(PROFILE),default) --workers $(or $(WORKERS),2)

lab: setup
	$(PIP) install --quiet torch==2.13.0 -e ".[book,lab,dev]"
	.venv/bin/jupyter lab notebooks/

# lmms-eval lives in its own environment: it needs torchvision, which breaks the core one.
LMMS_PY    := .venv-lmms/bin/python
LMMS_STAMP := .venv-lmms/.installed
LMMS_TMP   := .lmms-check

lmms-env: $(LMMS_STAMP)

$(LMMS_STAMP): pyproject.toml requirements-lmms.txt
	test -x $(LMMS_PY) || python3 -m venv .venv-lmms
	.venv-lmms/bin/pip install --quiet torch==2.14.1 torchvision==0.29.1
	.venv-lmms/bin/pip install --quiet -r requirements-lmms.txt
	.venv-lmms/bin/pip install --quiet --no-deps -e .
	touch $(LMMS_STAMP)

# The plugin's tests, then lmms-eval vs `studylib eval` on the full suites (every score
# within 0.5 points) for both teachers, a width-pruned and a non-uniform (layer-range)
# pruned student.
lmms-check: setup lmms-env
	OMP_NUM_THREADS=1 $(LMMS_PY) -m pytest -q -p no:cacheprovider tests_lmms
	rm -rf $(LMMS_TMP) && mkdir -p $(LMMS_TMP)
	$(PY) -m studylib.cli --threads 1 prune --model teachers/toy-llava --method width \
		--ratio 0.3 --out $(LMMS_TMP)/llava-width30
	$(PY) -m studylib.cli --threads 1 prune --model teachers/toy-bunny --method width \
		--ratio 0.2 --layer-range 2:6 --out $(LMMS_TMP)/bunny-width20-layers2-6
	for m in teachers/toy-llava teachers/toy-bunny $(LMMS_TMP)/llava-width30 \
	         $(LMMS_TMP)/bunny-width20-layers2-6; do \
	  $(PY) -m studylib.cli --threads 1 lmms-check $$m --out $(LMMS_TMP)/$$(basename $$m).csv \
	    || exit 1; \
	done
	@echo "lmms-check: comparisons kept in $(LMMS_TMP)/*.csv"

clean:
	rm -rf book/_build book/runs book/figures results
