# actedit — the two README commands and their parts.
#
#   make book    README command 1: set up, execute the chapters, nbval them, build _build/html
#   make test    README command 2: unit tests, the book if stale, nbval, the offline browser test
#
# Both are cheap when nothing changed: setup keeps markers, the book keeps stamps per chapter.

VENV   ?= .venv
PY     := $(VENV)/bin/python
BUILD  := $(PY) scripts/build_book.py
PARAMS ?=
BOOK_ARGS ?=
ifneq ($(strip $(PARAMS)),)
BOOK_ARGS += --params $(PARAMS)
endif
JOBS   ?=
ifneq ($(strip $(JOBS)),)
BOOK_ARGS += --jobs $(JOBS)
endif
PYTEST_ARGS ?=

.PHONY: help setup book notebooks html nbval test unit browser-test bench lock clean distclean

help:
	@echo "make setup      venv + requirements.lock + Debian datasets/chromium + offline web assets"
	@echo "make book       setup, execute stale chapters, nbval, jupyter-book build  (README command 1)"
	@echo "make test       setup, unit tests, book if stale, nbval, browser test     (README command 2)"
	@echo "make notebooks  execute stale chapters only;  make html: jupyter-book build only"
	@echo "make nbval      re-run nbval on every executed chapter, ignoring stamps"
	@echo "make bench      python bench/run.py"
	@echo "make lock       re-resolve requirements.lock, requirements-cpu.lock, environment.yml (uv, PyPI)"
	@echo "make clean      remove _build and the executed chapters;  make distclean: also venv, node_modules"
	@echo "PARAMS=params/paper make book   inject params/paper/<chapter>.yml where present"
	@echo "JOBS=1 make book                one chapter at a time (default: usable CPUs, at most 4)"

# ACTEDIT_TORCH=cpu make setup: torch's CPU-only wheels (PyTorch's index) and requirements-cpu.lock
setup:
	bash scripts/setup.sh

book: setup
	$(BUILD) --nbval $(BOOK_ARGS)

notebooks: setup
	$(BUILD) --no-html $(BOOK_ARGS)

html: setup
	$(BUILD) --no-execute $(BOOK_ARGS)

nbval: setup
	$(BUILD) --no-execute --no-html --force-nbval $(BOOK_ARGS)

unit: setup
	$(PY) -m pytest tests -m "not book" $(PYTEST_ARGS)

browser-test: setup
	$(PY) -m pytest tests -m book $(PYTEST_ARGS)

# The book step executes and nbval-checks only chapters whose stamps are stale; on a warm tree it only
# re-renders changed pages. The browser test then opens every built page with the network off.
test: unit book browser-test

bench: setup
	$(PY) bench/run.py

# requirements.lock (every platform, hashes), requirements-cpu.lock and environment.yml's pins, resolved with uv
# from PyPI (python -m pip install uv first); see scripts/lock.py.
lock:
	$(PY) scripts/lock.py

clean:
	rm -rf _build book/_executed

distclean: clean
	rm -rf $(VENV) node_modules book/_static/vendor .pytest_cache
