# jqref: make help lists the targets.
SCHEDULERS := slurm sge htcondor pbs
SHELL := bash
.DEFAULT_GOAL := help

# Host-side Python: the images' minor version (trixie: 3.13), since client and
# workers must match. Override with PYTHON=/path/to/python3.13.
PYTHON ?= $(firstword $(foreach p,python3.13 $(wildcard $(HOME)/.pyenv/versions/3.13*/bin/python3.13) /usr/bin/python3.13,\
            $(if $(shell $(p) -c 'import sys; assert sys.version_info[:2] == (3, 13)' 2>/dev/null && echo ok),$(p))))
VENV := .venv
PYTEST_ARGS ?=

# The tools that check the tree (ruff, mypy; build and twine) live in a venv of
# their own (build/tools-venv), not in the lock: the lock is also the images'
# wheelhouse, which they have no business in. Pinned here, by hand (a new ruff
# or mypy release adds rules and findings). About 10 s with a fresh venv, 5 s
# after (build fetches setuptools each time).
CHECK_TOOLS := build==1.6.1 twine==7.0.0 trove-classifiers==2026.9.21.13 ruff==0.17.6 mypy==2.4.1
# The documentation site's (make docs), pinned the same way: a new mkdocstrings
# or griffe changes what the API reference looks like, and --strict what fails.
DOCS_TOOLS := mkdocs==1.6.1 mkdocstrings==1.0.8 mkdocstrings-python==2.0.11 mkdocs-autorefs==1.4.5 \
    griffelib==2.4.1 markdown==3.11.4 pymdown-extensions==13.1.2
# Types for the dependencies that ship none. They go alone into a folder of
# their own (--no-deps --target), not into the tools venv's site-packages:
# mypy checks against .venv's packages (--python-executable), and finds these
# through PYTHONPATH, which the .venv interpreter it asks for its search path
# inherits. The tools venv's own packages (its cryptography) stay out of sight.
TYPE_STUBS := types-paramiko==5.1.0.20261030 types-PyYAML==6.0.12.20261122
TOOLS_VENV := build/tools-venv
MYPY = PYTHONPATH=$(TOOLS_VENV)/stubs $(TOOLS_VENV)/bin/mypy --python-executable $(VENV)/bin/python

.PHONY: help install lint typecheck docs unit compat test lock provision bench-slurm bench-scale bench-close package

help: ## Show this help
	@grep -hE '^[a-z%-]+:.*## ' $(MAKEFILE_LIST) | sed -E 's/:.*## /\t/' | expand -t 18

$(VENV)/.installed: pyproject.toml requirements/lock.txt
	@test -n "$(PYTHON)" || { echo "Python 3.13 not found; set PYTHON=/path/to/python3.13" >&2; exit 1; }
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install --quiet --disable-pip-version-check -c requirements/lock.txt -e '.[test]'
	touch $@

install: $(VENV)/.installed ## Create the development environment (.venv, Python 3.13, locked versions)

lint: $(TOOLS_VENV)/.installed ## Lint: ruff check and ruff format --check (rules and their reasons in pyproject.toml's [tool.ruff]), under a second
	$(TOOLS_VENV)/bin/ruff check .
	$(TOOLS_VENV)/bin/ruff format --check .

typecheck: $(TOOLS_VENV)/.installed install ## Type check: mypy on jqref against the locked dependencies (settings and exceptions in pyproject.toml's [tool.mypy]), about 3 s, 0.2 s once cached (build/mypy-cache)
	$(MYPY)

# mkdocs.yml says what is built; docs/_hooks generates the options reference from
# jqref/jqref.yaml (a key without its comment fails the build) and composes the
# cluster docstrings as jqref does at import. Nothing is fetched while building.
docs: $(TOOLS_VENV)/.installed ## Build the documentation site into build/site (mkdocs build --strict: a warning fails it), 1-2 s (10 s more to install the tools the first time)
	$(TOOLS_VENV)/bin/mkdocs build --strict

unit: install ## Unit tests: no Docker, seconds
	$(VENV)/bin/python -m pytest tests/unit --durations=10 $(PYTEST_ARGS)

# dask-jobqueue's own unit tests (from its wheel, a test dependency) against jqref: tests/dask_jobqueue_suite.
DASK_JOBQUEUE_TESTS = $(shell $(VENV)/bin/python -c 'import importlib.metadata as m; print(m.distribution("dask-jobqueue").locate_file("dask_jobqueue/tests"))' 2>/dev/null)

compat: install ## dask-jobqueue's own unit tests, run against jqref (differences: tests/dask_jobqueue_suite/differences.yaml)
	PYTHONPATH=tests/dask_jobqueue_suite $(VENV)/bin/python -m pytest -p jqref_suite $(DASK_JOBQUEUE_TESTS) --timeout 120 --durations=10 $(PYTEST_ARGS)

# The scheduler on the login node, on testbeds whose compute nodes cannot reach this machine.
ISOLATED_SCHEDULERS := slurm sge

test: lint typecheck docs unit compat package $(addprefix test-,$(SCHEDULERS)) $(addprefix test-isolated-,$(ISOLATED_SCHEDULERS)) ## Everything: lint, type check, docs, unit tests, then the end-to-end suite on every testbed
# PBS in `make test` is the offline flavour (OpenPBS needs internet): make test-pbs PBS_FLAVOR=openpbs for the real one.
test: export PBS_FLAVOR := compat

provision: ## Install and start a Docker engine and the compose plugin if missing (Debian/Ubuntu, root)
	scripts/docker-engine.sh

up-%: ## Bring a testbed up and wait until it runs jobs (e.g. make up-slurm)
	scripts/testbed.sh up $*

down-%: ## Remove a testbed, its containers and volumes
	scripts/testbed.sh down $*

# The suite brings its testbed up itself (pytest-docker) and tears down what it started.
SUITE = $(VENV)/bin/python -m pytest tests/integration --scheduler $* -v --timeout 900 --durations=10 $(if $(filter 1,$(KEEP)),--keep-testbed)

test-%: install ## Bring a testbed up, run the suite on it (MODE=local|ssh|both, default both), tear it down (KEEP=1 keeps it)
	$(SUITE) --mode $(or $(MODE),both) $(PYTEST_ARGS)

test-isolated-%: install ## The suite over SSH with the scheduler on the login node, compute nodes unable to reach this machine
	$(SUITE) --isolated $(PYTEST_ARGS)

# CMD reaches the testbed as written: make would expand its $(...) and $name on the way.
run-%: override export JQREF_RUN_CMD := $(value CMD)
run-%: ## Run another project's command in a testbed, brought up if needed: CMD='...' [WHEELS=dir] [TREE=dir]
	scripts/testbed.sh up $*
	CMD="$$JQREF_RUN_CMD" scripts/testbed.sh run $*

logs-%: ## Show a testbed's daemon logs
	scripts/testbed.sh logs $*

shell-%: ## Open a shell on a testbed's login node
	scripts/testbed.sh shell $*

bench-slurm: install ## Benchmark on the SLURM testbed: time to workers vs dask-jobqueue, SSH round trips, bring-up (COLD=1 adds a cold build)
	$(VENV)/bin/python benchmarks/bench_slurm.py $(if $(filter 1,$(COLD)),--cold) $(BENCH_ARGS)

bench-close: ## close() with running workers on the SLURM testbed, in its login node (ROUNDS=5 of 2 one-worker jobs)
	scripts/testbed.sh up slurm
	CMD='PYTHONPATH=/src /opt/jqref/bin/python /src/benchmarks/close_time.py --rounds $(or $(ROUNDS),5)' scripts/testbed.sh run slurm

bench-scale: install ## Benchmark at scale on the SCALE=1 SLURM testbed: 16 and 64 workers with and without arrays vs dask-jobqueue, 1000 held jobs
	SCALE=1 TESTBED_PROJECT=jqref-bench-scale $(VENV)/bin/python benchmarks/bench_slurm.py --scale --rounds 3 $(BENCH_ARGS)

lock: install ## Re-pin requirements/lock.txt from a fresh resolve of pyproject.toml's dependencies
	rm -rf build/lock-venv && $(PYTHON) -m venv build/lock-venv
	build/lock-venv/bin/pip install --quiet '.[test]' && build/lock-venv/bin/pip uninstall -y -q jqref
	{ sed -n '/^#/p' requirements/lock.txt; build/lock-venv/bin/pip freeze; } > requirements/lock.txt.new
	mv requirements/lock.txt.new requirements/lock.txt


$(TOOLS_VENV)/.installed: Makefile
	@test -n "$(PYTHON)" || { echo "Python 3.13 not found; set PYTHON=/path/to/python3.13" >&2; exit 1; }
	@test -x $(TOOLS_VENV)/bin/python || $(PYTHON) -m venv $(TOOLS_VENV)
	@$(TOOLS_VENV)/bin/pip install --quiet --disable-pip-version-check $(CHECK_TOOLS) $(DOCS_TOOLS) > $(TOOLS_VENV)/pip.log 2>&1 \
	    || { cat $(TOOLS_VENV)/pip.log >&2; exit 1; }
	@rm -rf $(TOOLS_VENV)/stubs
	@$(TOOLS_VENV)/bin/pip install --quiet --disable-pip-version-check --no-deps --target $(TOOLS_VENV)/stubs $(TYPE_STUBS) \
	    >> $(TOOLS_VENV)/pip.log 2>&1 || { cat $(TOOLS_VENV)/pip.log >&2; exit 1; }
	touch $@

package: $(TOOLS_VENV)/.installed ## Build the sdist and wheel into build/dist and check them (twine check --strict, classifiers, py.typed and LICENSE in the wheel)
	rm -rf build/dist
	$(TOOLS_VENV)/bin/python -m build --outdir build/dist . > build/package.log 2>&1 || { cat build/package.log >&2; exit 1; }
	$(TOOLS_VENV)/bin/twine check --strict build/dist/*
	@$(TOOLS_VENV)/bin/python -c '$(PACKAGE_CHECK)'

# What twine does not check: the wheel's data files, every module of the tree (a subpackage missing
# from [tool.setuptools] packages would be left out), the license, and that each classifier exists.
PACKAGE_CHECK = import email, glob, sys, zipfile, trove_classifiers; \
    wheel = zipfile.ZipFile(glob.glob("build/dist/*.whl")[0]); names = wheel.namelist(); \
    meta = email.message_from_bytes(wheel.read(next(n for n in names if n.endswith(".dist-info/METADATA")))); \
    missing = [f for f in ("jqref/py.typed", "jqref/jqref.yaml", *glob.glob("jqref/**/*.py", recursive=True)) if f not in names]; \
    missing += [] if any(n.endswith(".dist-info/licenses/LICENSE") for n in names) else ["LICENSE"]; \
    unknown = [c for c in meta.get_all("Classifier", []) if c not in trove_classifiers.classifiers]; \
    (missing or unknown) and sys.exit(f"the wheel lacks {missing}; unknown classifiers: {unknown}"); \
    print(f"{wheel.filename}: {len(names)} files, py.typed, jqref.yaml and LICENSE in it; classifiers known")
