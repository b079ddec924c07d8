# The two commands: `make run` and `make test`. Both set up everything first.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
PYTEST_WORKERS ?= 2
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)

.PHONY: setup tools run test lint bench clean

setup: $(STAMP) tools

# kcat, a Kafka client in C from Debian's packages: the tests run it against tidings serve
tools:
	command -v kcat >/dev/null || { $(SUDO) apt-get install -y -q kcat || { $(SUDO) apt-get update -q && $(SUDO) apt-get install -y -q kcat; }; }

$(STAMP): pyproject.toml
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

bench: setup
	$(BIN)/python -m bench
	$(BIN)/python -m bench --queue
	$(BIN)/python -m bench --pubsub
	$(BIN)/python -m bench --kafka
	$(BIN)/python -m bench --cdc
	$(BIN)/python -m bench --es
	$(BIN)/python -m bench --engines

clean:
	rm -rf $(VENV) .tidings .pytest_cache .mypy_cache .ruff_cache bench/results
