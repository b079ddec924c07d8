# The two commands: `make run` and `make test`. Both set up everything first.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
PYTEST_WORKERS ?= 2
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)

.PHONY: setup tools run test lint bench clean

setup: $(STAMP) tools

# From Debian's packages: kcat, a Kafka client in C the tests run against tidings serve;
# redis-server, a peer of the benchmark suite (its smoke run is part of the tests)
tools:
	command -v kcat >/dev/null || { $(SUDO) apt-get install -y -q kcat || { $(SUDO) apt-get update -q && $(SUDO) apt-get install -y -q kcat; }; }
	command -v redis-server >/dev/null || { $(SUDO) apt-get install -y -q redis-server || { $(SUDO) apt-get update -q && $(SUDO) apt-get install -y -q redis-server; }; }

$(STAMP): pyproject.toml $(wildcard src/tidings/*/*.c src/tidings/*/*/*.c)
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[server,postgres,kafka,nats,dev,bench]'
	touch $@

run: setup
	$(BIN)/tidings serve

test: setup lint
	$(BIN)/python -m pytest -n $(PYTEST_WORKERS) --durations=10

lint: setup
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

# every scenario, tidings beside its peers: one table, bench/results/latest.json and .png
bench: setup
	$(BIN)/python -m bench

clean:
	rm -rf $(VENV) .tidings .pytest_cache .mypy_cache .ruff_cache bench/results/quick.* bench/results/partial.*
	rm -rf build src/*.egg-info
	find src -name '*.so' -delete
