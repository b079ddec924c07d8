"""Fixtures for tests that run real child processes against one store file."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from .procs import Children


@pytest.fixture
def children(tmp_path: Path) -> Iterator[Children]:
    """Starts child processes; kills any still running when the test ends, pass or fail."""
    started = Children(tmp_path)
    try:
        yield started
    finally:
        started.stop_all()


@pytest.fixture
def store_url(tmp_path: Path) -> str:
    """The URL of a fresh store file."""
    return f"sqlite://{tmp_path}/bus.db"
