"""The modules in C: used where built, Python's in their place where not built or off."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tidings.core.compiled import NO_EXTENSIONS

MODULES = [
    "tidings.api._sending",
    "tidings.engines.kafka._producing",
    "tidings.engines.kafka._records",
    "tidings.core._kafka_check",
    "tidings.core._records",
]

IN_PYTHON = (
    "from tidings.api import producer\n"
    "from tidings.engines.kafka import consumer, producer as kafka\n"
    "assert producer._Sender is producer._PythonSender\n"
    "assert producer.RecordFuture.__mro__[1] is producer._PythonFutureCore\n"
    "assert kafka._produced is kafka._produced_in_python\n"
    "assert kafka._Counter is kafka._PythonCounter\n"
    "assert consumer._made is consumer._made_in_python\n"
    "from tidings.core import kafka_batch\n"
    "assert kafka_batch._records_problem is kafka_batch._records_problem_in_python\n"
    "from tidings.core import records\n"
    "assert records._records is records._records_in_python\n"
)


IN_C = (
    "from tidings.api import producer\n"
    "from tidings.engines.kafka import consumer, producer as kafka\n"
    "from tidings.core import kafka_batch, records\n"
    "assert producer._sending is not None, 'tidings.api._sending was not built'\n"
    "assert producer._Sender is producer._sending.Sender\n"
    "assert kafka._producing is not None, 'tidings.engines.kafka._producing was not built'\n"
    "assert kafka._produced is kafka._producing.produced\n"
    "assert consumer._records is not None, 'tidings.engines.kafka._records was not built'\n"
    "assert consumer._made is consumer._records.made\n"
    "assert kafka_batch._kafka_check is not None, 'tidings.core._kafka_check was not built'\n"
    "assert kafka_batch._records_problem is kafka_batch._kafka_check.records_problem\n"
    "assert records._compiled is not None, 'tidings.core._records was not built'\n"
    "assert records._records is records._compiled.records\n"
)


def _run(code: str, **env: str) -> None:
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60, env={**os.environ, **env})


def test_the_compiled_modules_are_in_use_where_a_compiler_is_at_hand() -> None:
    # the test machines have one: a build that silently fell back to Python fails here,
    # in a process of its own with the modules switched on, whatever this run's switch
    _run(IN_C, **{NO_EXTENSIONS: "0"})


def test_where_the_modules_were_not_built_python_runs_in_their_place() -> None:
    missing = "".join(f"sys.modules[{m!r}] = None\n" for m in MODULES)
    _run(f"import sys\n{missing}{IN_PYTHON}", **{NO_EXTENSIONS: "0"})


@pytest.mark.parametrize("value", ["1", "yes"])
def test_the_switch_makes_python_run_in_their_place(value: str) -> None:
    _run(IN_PYTHON, **{NO_EXTENSIONS: value})


@pytest.mark.slow
@pytest.mark.servers
def test_the_python_implementations_pass_the_producer_and_consumer_conformance_tests() -> None:
    # on a real Kafka broker, in a process of their own (the choice is made at import)
    tests = Path(__file__).parents[1] / "conformance"
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            "-q",
            "-p",
            "no:xdist",
            "-p",
            "no:cacheprovider",
            str(tests / "test_producer.py"),
            str(tests / "test_consume.py"),
            "-k",
            "kafka-serve",
        ],
        env={**os.environ, NO_EXTENSIONS: "1"},
        check=False,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-2000:]
