"""Every conformance test runs once per engine: the semantics are written once."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

import tidings

ENGINES = ("memory", "sqlite")


@pytest.fixture(params=ENGINES)
def bus_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """The URL of a fresh, empty bus on each engine."""
    if request.param == "memory":
        return "memory://"
    return f"sqlite://{tmp_path}/bus.db"


@pytest.fixture
def bus(bus_url: str) -> Iterator[tidings.Bus]:
    """A connected sync bus, closed after the test."""
    b = tidings.connect(bus_url)
    yield b
    b.close()
