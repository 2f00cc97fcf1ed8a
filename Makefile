# genai-course: `make lab` runs the course, `make test` checks everything.
#
# TORCH is installed before the course so that pip keeps it: the default takes
# the CPU build that lies on the course machines' disk. Elsewhere, pick the
# build you want, e.g.
#   make lab TORCH="torch --index-url https://download.pytorch.org/whl/cpu"

PYTHON ?= python3
VENV ?= .venv
TORCH ?= torch==2.13.0
LAB_ARGS ?=
PYTEST_ARGS ?=

BIN := $(CURDIR)/$(VENV)/bin
# Jupyter refuses to run as root unless told; containers and CI machines often are root.
ALLOW_ROOT := $(if $(filter 0,$(shell id -u)),--allow-root,)
STAMP := $(VENV)/.installed
GRADING_STAMP := $(VENV)/.grading-installed
TEST_STAMP := $(VENV)/.test-installed
# Debian packages come from apt, with sudo when not root.
SUDO := $(if $(filter 0,$(shell id -u)),,sudo)
# nbgrader shells out to alembic: the environment's bin/ must be on PATH.
export PATH := $(BIN):$(PATH)

# JupyterLab's defaults for the course (binder/jupyterlab-overrides.json: no "get Jupyter news?" pop-up over
# the first notebook, no update checks); Binder's postBuild installs the same file.
LAB_SETTINGS = mkdir -p $(VENV)/share/jupyter/lab/settings && \
	cp binder/jupyterlab-overrides.json $(VENV)/share/jupyter/lab/settings/overrides.json

ASSIGNMENTS := $(notdir $(patsubst %/,%,$(sort $(dir $(wildcard solutions/*/*.ipynb)))))

.PHONY: help install grade lab test test-browser lint release check-release links grade-demo publish doctor clean

help:
	@echo "make lab           install if needed, then open JupyterLab at notebooks/"
	@echo "make test          install if needed, then lint, pytest, grading round trip, nbval (FAST mode)"
	@echo "make test-browser  drive JupyterLab in headless Chromium (installs chromium and playwright if missing)"
	@echo "make release       regenerate notebooks/ from solutions/ with nbgrader"
	@echo "make check-release fail if notebooks/ differs from a fresh release"
	@echo "make links         regenerate badges and Colab install lines from pyproject's Repository URL"
	@echo "make grade A=a     grade every submission of assignment a (JOBS=n workers, SHARD=k/n, sandboxed)"
	@echo "make grade-demo    grade a few example submissions in a throw-away course and print the table"
	@echo "make publish DIR=d write a student-only copy of the course (no solutions, no hidden tests) to d"
	@echo "make doctor        check the environment ([OK]/[FAIL] per requirement)"
	@echo "make lint          ruff"

$(STAMP): pyproject.toml binder/jupyterlab-overrides.json
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet $(TORCH)
	$(BIN)/python -m pip install --quiet -e ".[dev]"
	$(LAB_SETTINGS)
	touch $(STAMP)

# Grading needs two Debian packages: bubblewrap (the sandbox) and postgresql (the gradebook for
# parallel grading). Installed only when missing and apt-get exists (not on macOS); a package that
# cannot be installed is a one-line note, never a failure. Students
# (`make lab`) need neither.
$(GRADING_STAMP): $(STAMP)
	@missing=""; \
	test -x /usr/bin/bwrap || missing="$$missing bubblewrap"; \
	ls /usr/lib/postgresql/*/bin/postgres >/dev/null 2>&1 || missing="$$missing postgresql"; \
	if [ -n "$$missing" ] && command -v apt-get >/dev/null; then \
		echo "installing Debian packages:$$missing"; \
		{ $(SUDO) apt-get update -q && \
			DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -q $$missing; } || true; \
	fi; \
	test -x /usr/bin/bwrap || echo "note: bubblewrap not installed: grading will refuse untrusted submissions"; \
	ls /usr/lib/postgresql/*/bin/postgres >/dev/null 2>&1 || \
		echo "note: postgresql not installed: no parallel grading, tests/test_pgserver.py skips"
	touch $(GRADING_STAMP)

# The independent implementations the tests compare with (transformers' GPT-2, diffusers' DDPM scheduler):
# `make test` installs them so that those tests run instead of skipping; students (`make lab`) need neither.
$(TEST_STAMP): $(GRADING_STAMP) pyproject.toml
	$(BIN)/python -m pip install --quiet -e ".[dev,hf]"
	touch $(TEST_STAMP)

install: $(STAMP)

lab: $(STAMP)
	$(BIN)/jupyter lab --LabApp.default_url=/lab/tree/notebooks $(ALLOW_ROOT) $(LAB_ARGS)

doctor: $(STAMP)
	$(BIN)/python -m course_lib doctor

lint: $(STAMP)
	$(BIN)/ruff check .

test: $(TEST_STAMP)
	$(BIN)/ruff check .
	COURSE_FAST=1 MPLBACKEND=Agg $(BIN)/python -m pytest -n 2 --dist loadscope --no-loadscope-reorder tests solutions \
		--ignore=tests/browser --nbval-lax --nbval-current-env --nbval-cell-timeout=300 $(PYTEST_ARGS)

# Debian's chromium (Playwright's own browser download is not used); sudo when not root.
BROWSER_STAMP := $(VENV)/.browser-installed

$(BROWSER_STAMP): $(STAMP)
	test -x /usr/bin/chromium || { $(SUDO) apt-get update -q && \
		DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -q chromium; }
	$(BIN)/python -m pip install --quiet -e ".[browser]"
	touch $(BROWSER_STAMP)

test-browser: $(BROWSER_STAMP)
	COURSE_FAST=1 $(BIN)/python -m pytest -p no:cacheprovider -rP -q tests/browser $(PYTEST_ARGS)

release: $(STAMP)
	$(BIN)/python tools/nbsource.py sync
	@for a in $(ASSIGNMENTS); do \
		$(BIN)/nbgrader generate_assignment $$a --force --log-level=WARN || exit 1; \
	done
	@echo "notebooks/ regenerated from solutions/ ($(ASSIGNMENTS))"

check-release: $(STAMP)
	COURSE_FAST=1 $(BIN)/python -m pytest -q tests/test_release.py

links: $(STAMP)
	$(BIN)/python tools/links.py
	$(BIN)/python tools/nbsource.py export

# Grade a class: every student under grading/submitted/*/$(A), JOBS sandboxed workers, optionally one
# SHARD k/n of the class (for a cluster). Re-running resumes; ARGS="--force" regrades.
A ?=
JOBS ?= 1
SHARD ?=
ARGS ?=
grade: $(GRADING_STAMP)
	@test -n "$(A)" || { echo "usage: make grade A=01_gans [JOBS=4] [SHARD=k/n] [ARGS='--force --db URL']"; exit 2; }
	$(BIN)/python -m course_lib.autograde grade $(A) --jobs $(JOBS) $(if $(SHARD),--shard $(SHARD),) $(ARGS)

grade-demo: $(GRADING_STAMP)
	$(BIN)/python tools/grade_demo.py

publish: $(STAMP)
	@test -n "$(DIR)" || { echo "usage: make publish DIR=/path/to/student-copy"; exit 2; }
	$(BIN)/python tools/publish.py "$(DIR)"

clean:
	rm -rf grading .pytest_cache .ruff_cache
