# The two set-up commands of the README: `make demo` and `make test`. Each installs what it needs
# (a virtualenv inside the checkout with the Python packages) and then runs its job.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-stamp
PORT ?= 8090

.PHONY: install sysdeps browser hdf5tools native demo test wheelcheck lint typecheck format schemas bench clean

$(PY):
	@$(PYTHON) -c 'import sys; sys.exit(sys.version_info < (3, 11))' || \
		{ echo "pipevisor needs Python 3.11 or newer; set PYTHON=python3.x"; exit 1; }
	@# Debian splits venv/ensurepip into python3-venv: install it when it is missing.
	@$(PYTHON) -c 'import ensurepip, venv' 2>/dev/null || \
		{ command -v apt-get >/dev/null && apt-get update -qq && apt-get install -y -qq python3-venv; }
	$(PYTHON) -m venv $(VENV)

$(STAMP): pyproject.toml | $(PY)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[test]'
	touch $(STAMP)

# The C side (runners/c) links Debian's libzmq, jansson (JSON) and libmd (MD5 of bsread's data
# header), built by gcc and make; its sanitizer build needs clang's runtimes only through gcc's
# libasan/libubsan, which come with gcc. Installed with apt-get when pkg-config misses one.
C_PACKAGES := libzmq3-dev libjansson-dev libmd-dev pkg-config gcc make
sysdeps:
	@pkg-config --exists libzmq jansson libmd 2>/dev/null && command -v gcc >/dev/null || \
		{ command -v apt-get >/dev/null || { echo "install: $(C_PACKAGES)"; exit 1; }; \
		  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $(C_PACKAGES); }

## Headless Chromium and its driver from Debian, for the web page tests (never downloaded by
## selenium itself: the tests give it both paths).
BROWSER_PACKAGES := chromium chromium-driver
browser:
	@command -v chromium >/dev/null && command -v chromedriver >/dev/null || \
		{ command -v apt-get >/dev/null || { echo "install: $(BROWSER_PACKAGES)"; exit 1; }; \
		  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $(BROWSER_PACKAGES); }

## Debian's h5ls and h5clear, which the HDF5 writer's tests run on the files they write.
HDF5_PACKAGES := hdf5-tools
hdf5tools:
	@command -v h5ls >/dev/null && command -v h5clear >/dev/null || \
		{ command -v apt-get >/dev/null || { echo "install: $(HDF5_PACKAGES)"; exit 1; }; \
		  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $(HDF5_PACKAGES); }

## The C library and the example native program.
native: sysdeps
	$(MAKE) -C runners/c

install: $(STAMP) native

## The supervisor with a simulated camera and a beam-profile pipeline (Ctrl-C stops everything).
demo: install
	$(VENV)/bin/pipevisor serve --registry examples/registry --port $(PORT)

## Type check and lint, then the whole test suite.
test: install browser hdf5tools typecheck
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(PY) -m pytest

## The package as users get it: build the sdist and the wheel, install the wheel into a fresh
## virtualenv outside the checkout, build C against the installed sources, run the demo from it.
wheelcheck: install
	PY=$(PY) bash .ci/check_wheel.sh

lint: install typecheck
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

## mypy --strict over supervisor/, runners/python/, builtin_pipelines/ and cluster/ (the
## [tool.mypy] section of pyproject.toml); `make lint` and `make test` run it first.
typecheck: install
	$(PY) -m mypy

format: install
	$(VENV)/bin/ruff format .
	$(VENV)/bin/ruff check --fix .

## Re-export the contract's JSON schemas after changing its models.
schemas: install
	$(PY) -m supervisor.contract.schemas

## Benchmarks: each prints its figures and the ratio to its baseline.
bench: install
	for b in bench/bench_*.py; do echo "== $$b"; $(PY) $$b || exit 1; done

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache .hypothesis
	$(MAKE) -C runners/c clean
