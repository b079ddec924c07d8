"""The event store's semantics, stated once and run on every storage."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tidings import eventsourcing

from ..postgres import pg_dsn, postgres

__all__ = ["pg_dsn", "postgres", "store", "store_url"]

STORAGES = ["memory", "sqlite", "postgres"]


@pytest.fixture(params=STORAGES)
def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A fresh, empty event store on each storage (PostgreSQL: a database of its own)."""
    if request.param == "memory":
        return "memory://"
    if request.param == "sqlite":
        return f"sqlite://{tmp_path}/events.db"
    dsn: str = request.getfixturevalue("pg_dsn")
    parts = dict(item.split("=", 1) for item in dsn.split())
    return f"postgresql://{parts['user']}@{parts['host']}:{parts['port']}/{parts['dbname']}"


@pytest.fixture
def store(store_url: str) -> Iterator[eventsourcing.EventStore]:
    """A connected sync event store, closed after the test."""
    s = eventsourcing.connect(store_url)
    yield s
    s.close()
