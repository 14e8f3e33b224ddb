# actedit — the two README commands and their parts.
#
#   make book    README command 1: set up, train the models, execute the chapters, build _build/html
#   make test    README command 2: unit tests, the book if stale, nbval on every chapter, the offline browser test
#
# The book is a Snakemake workflow (workflow/Snakefile): it runs only what changed since the last build. nbval
# re-executes every chapter to check that it reproduces its outputs: a test (command 2), not a step of building
# the book, so `make book` does not pay for a second execution of every chapter.

VENV   ?= .venv
PY     := $(VENV)/bin/python
PARAMS ?=
# jobs side by side: $$ACTEDIT_BOOK_JOBS, else the usable CPUs, at most 4 (each kernel holds ~2 GiB)
JOBS   ?= $(or $(ACTEDIT_BOOK_JOBS),$(shell n=$$(nproc 2>/dev/null || echo 1); [ $$n -gt 4 ] && n=4; echo $$n))
SNAKE_ARGS ?=
# targets go first: --rerun-triggers and --config take every word after them
SNAKEMAKE = $(VENV)/bin/snakemake $(1) --cores $(JOBS) --rerun-triggers mtime params input $(SNAKE_ARGS) \
	--config params=$(PARAMS) $(2)
PYTEST_ARGS ?=

.PHONY: help setup book checked notebooks html nbval dag test unit browser-test bench lock clean distclean

help:
	@echo "make setup      venv + requirements.lock + Debian datasets/chromium + offline web assets"
	@echo "make book       setup, train, execute stale chapters, jupyter-book build  (README command 1)"
	@echo "make test       setup, unit tests, book if stale, nbval (stale checks), browser test  (README command 2)"
	@echo "make notebooks  execute stale chapters only;  make html: jupyter-book build only"
	@echo "make checked    the book and nbval on every chapter not checked since it was executed"
	@echo "make nbval      re-run nbval on every chapter (executing stale ones first)"
	@echo "make dag        redraw book/_static/workflow_dag.svg (snakemake --dag, needs graphviz)"
	@echo "make bench      python bench/run.py"
	@echo "make lock       re-resolve requirements.lock, requirements-cpu.lock, environment.yml (uv, PyPI)"
	@echo "make clean      remove _build and the executed chapters;  make distclean: also venv, node_modules"
	@echo "PARAMS=params/paper make book   inject params/paper/<chapter>.yml where present"
	@echo "JOBS=1 make book                one job at a time (default: usable CPUs, at most 4)"
	@echo "SNAKE_ARGS=-n make book         any other snakemake option (here: a dry run)"

# ACTEDIT_TORCH=cpu make setup: torch's CPU-only wheels (PyTorch's index) and requirements-cpu.lock
setup:
	bash scripts/setup.sh

book: setup
	$(call SNAKEMAKE,all,nbval=0)

# the book and nbval of every chapter whose check is older than its executed notebook (what `make test` runs)
checked: setup
	$(call SNAKEMAKE,all,nbval=1)

notebooks: setup
	$(call SNAKEMAKE,notebooks)

html: setup
	$(PY) workflow/book.py html

nbval: setup
	$(call SNAKEMAKE,checked --forcerun nbval,nbval=1)

# The figure of the default book's jobs in the README; with PARAMS=params/paper it shows the paper-scale DAG.
dag:
	$(call SNAKEMAKE,all --dag --forceall --nolock,nbval=1) \
	| $(PY) workflow/book.py label-dag --params=$(PARAMS) | unflatten -l 4 -f -c 8 | dot -Tsvg \
	> book/_static/workflow_dag.svg

unit: setup
	$(PY) -m pytest tests -m "not book" $(PYTEST_ARGS)

browser-test: setup
	$(PY) -m pytest tests -m book $(PYTEST_ARGS)

# The book step trains, executes and nbval-checks only what changed (Snakemake: files newer than their
# outputs, changed parameters); on a warm tree it does nothing. The browser test then opens every built page
# with the network off.
test: unit checked browser-test

bench: setup
	$(PY) bench/run.py

# requirements.lock (every platform, hashes), requirements-cpu.lock and environment.yml's pins, resolved with uv
# from PyPI (python -m pip install uv first); see scripts/lock.py.
lock:
	$(PY) scripts/lock.py

clean:
	rm -rf _build book/_executed .snakemake

distclean: clean
	rm -rf $(VENV) node_modules book/_static/vendor .pytest_cache
