# The two commands: `make run` and `make test`. Both set up everything first, from the lock.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
PYTEST_WORKERS ?= 2
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)
# uv installs the lock; its own version is pinned here, in a venv of its own
UV_VERSION := 0.13.8
UV := .uv/bin/uv
LOCK := requirements.lock
# what the lock covers: every extra and every dependency group, for Python 3.11 and newer
LOCK_INPUTS := pyproject.toml --all-extras --group dev --group bench --group build \
	--universal --python-version 3.11 --generate-hashes
# Quix Streams runs in a venv of its own, from a lock of its own: it pins confluent-kafka
# below the version tidings' lock has (docs/server.md, "Stream processing frameworks")
QUIX_VENV := .venv-quix
QUIX_STAMP := $(QUIX_VENV)/.installed
QUIX_LOCK := tests/streams/quix.lock
QUIX_LOCK_INPUTS := tests/streams/quix.in --universal --python-version 3.11 --generate-hashes
.PHONY: setup tools lock lockcheck vendor run test check fuzz lint bench clean

setup: lockcheck $(STAMP) $(QUIX_STAMP) tools

# From Debian's packages: kcat, a Kafka client in C the tests run against tidings serve;
# redis-server, a peer of the benchmark suite (its smoke run is part of the tests);
# chromium, the headless browser that checks the HTTP API's pages as a person sees them
tools:
	command -v kcat >/dev/null || { $(SUDO) apt-get install -y -q kcat || { $(SUDO) apt-get update -q && $(SUDO) apt-get install -y -q kcat; }; }
	command -v redis-server >/dev/null || { $(SUDO) apt-get install -y -q redis-server || { $(SUDO) apt-get update -q && $(SUDO) apt-get install -y -q redis-server; }; }
	command -v chromium >/dev/null || { $(SUDO) apt-get install -y -q --no-install-recommends chromium || { $(SUDO) apt-get update -q && $(SUDO) apt-get install -y -q --no-install-recommends chromium; }; }

$(UV):
	$(PYTHON) -m venv .uv
	.uv/bin/python -m pip install --quiet uv==$(UV_VERSION)

# make test fails here, before installing anything, when pyproject.toml changed its
# dependencies and the lock was not made again
lockcheck:
	@$(PYTHON) scripts/lockfile.py check

# exactly the lock, nothing else (uv pip sync removes what it does not name), then tidings
# itself, built with the lock's setuptools; all compiled to bytecode once, as pip would
# (the tests start the CLI hundreds of times, and each start would compile it again)
$(STAMP): $(LOCK) pyproject.toml $(wildcard src/tidings/*/*.[ch] src/tidings/*/*/*.[ch]) | $(UV)
	test -x $(BIN)/python || $(UV) venv --quiet --python $(PYTHON) $(VENV)
	$(UV) pip sync --quiet --compile-bytecode --python $(BIN)/python --require-hashes $(LOCK)
	$(UV) pip install --quiet --python $(BIN)/python --no-deps --no-build-isolation -e .
	$(BIN)/python -m compileall -q src >/dev/null
	touch $@

# the framework the stream tests run against tidings serve: exactly its lock, nothing of
# tidings (the tests talk to it over the Kafka protocol only)
$(QUIX_STAMP): $(QUIX_LOCK) | $(UV)
	test -x $(QUIX_VENV)/bin/python || $(UV) venv --quiet --python $(PYTHON) $(QUIX_VENV)
	$(UV) pip sync --quiet --python $(QUIX_VENV)/bin/python --require-hashes $(QUIX_LOCK)
	touch $@

# refresh the locks on purpose: pins that still fit their inputs are kept (UPGRADE=1 takes
# the newest versions instead); commit each with the file it is made from
lock: $(UV)
	$(UV) pip compile --quiet $(LOCK_INPUTS) $(if $(UPGRADE),--upgrade) -o $(LOCK)
	$(UV) pip compile --quiet $(QUIX_LOCK_INPUTS) $(if $(UPGRADE),--upgrade) -o $(QUIX_LOCK)
	$(PYTHON) scripts/lockfile.py stamp

# fetch again from npm, exactly the versions recorded in its vendor.toml, the assets of the
# HTTP API's /docs and /redoc pages (committed; needs npm, never run by setup)
vendor:
	$(PYTHON) scripts/vendor.py

run: setup
	$(BIN)/tidings serve

# PYTEST_ARGS narrows a run (paths, -k ...); with PYTHON=... VENV=.venv-3.13 it runs on
# another interpreter, in a venv of its own from the same lock (see README, Development)
test: setup lint
	$(BIN)/python -m pytest -n $(PYTEST_WORKERS) --durations=10 $(PYTEST_ARGS)

# the inner loop, in about a minute: lint, types, the unit tests and the conformance suite
# on memory:// and sqlite://; what needs servers or takes long (marked servers or slow) is
# left to make test
check: setup lint
	$(BIN)/python -m pytest -n $(PYTEST_WORKERS) -q -p no:cacheprovider -m "not slow and not servers" tests/unit tests/conformance

# the structure-aware fuzz of every Kafka API and version against one broker, for an hour
# (make test runs it for a minute); FUZZ_SEED=n replays a run whose seed a failure named
FUZZ_SECONDS ?= 3600
fuzz: setup
	FUZZ_SECONDS=$(FUZZ_SECONDS) $(BIN)/python -m pytest tests/fuzz -s -p no:cacheprovider

lint: setup
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

# every scenario, tidings beside its peers: one table, bench/results/latest.json and .png
bench: setup
	$(BIN)/python -m bench

clean:
	rm -rf $(VENV) $(QUIX_VENV) .uv .tidings .pytest_cache .mypy_cache .ruff_cache bench/results/quick.* bench/results/partial.*
	rm -rf build src/*.egg-info
	find src -name '*.so' -delete
