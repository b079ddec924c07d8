"""The event store's semantics, stated once and run on every storage."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tidings import eventsourcing

STORAGES = ["memory", "sqlite"]


@pytest.fixture(params=STORAGES)
def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A fresh, empty event store on each storage."""
    return "memory://" if request.param == "memory" else f"sqlite://{tmp_path}/events.db"


@pytest.fixture
def store(store_url: str) -> Iterator[eventsourcing.EventStore]:
    """A connected sync event store, closed after the test."""
    s = eventsourcing.connect(store_url)
    yield s
    s.close()
