"""Every conformance test runs once per engine: the semantics are written once.

A test that needs an engine capability says so with `@pytest.mark.needs(Capability.X)`;
it is generated only for the engines that declare that capability (never skipped).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

import tidings
from tidings.engines.base import Capability
from tidings.engines.log.engine import LOG_CAPABILITIES

ENGINES: dict[str, frozenset[Capability]] = {
    "memory": LOG_CAPABILITIES - {Capability.DURABLE, Capability.MULTI_PROCESS},
    "sqlite": LOG_CAPABILITIES,
}
"""Each engine the suite runs on, with the capabilities it declares."""


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    """Parametrize `bus_url` with every engine that has what the test needs."""
    if "bus_url" not in metafunc.fixturenames:
        return
    needed = {c for mark in metafunc.definition.iter_markers("needs") for c in mark.args}
    engines = [name for name, caps in ENGINES.items() if needed <= caps]
    metafunc.parametrize("bus_url", engines, indirect=True)


@pytest.fixture
def bus_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """The URL of a fresh, empty bus on each engine."""
    if request.param == "memory":
        return "memory://"
    if request.param == "sqlite":
        return f"sqlite://{tmp_path}/bus.db"
    raise AssertionError(f"no fixture for engine {request.param!r}")


@pytest.fixture
def bus(bus_url: str) -> Iterator[tidings.Bus]:
    """A connected sync bus, closed after the test."""
    b = tidings.connect(bus_url)
    yield b
    b.close()
