"""A real PostgreSQL for the tests: initdb'd and started by the suite, stopped by its pid.

The server (bench/postgres_server.py) runs from the image's own binaries as the `postgres`
user, listens on a free loopback port with `wal_level=logical` and `fsync=off`, and trusts
local connections. Each test gets a fresh database of its own.
"""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import Iterator

import psycopg
import pytest
from bench.postgres_server import Postgres, start, stop

__all__ = ["Postgres", "pg_dsn", "postgres", "start", "stop"]


@pytest.fixture(scope="session")
def postgres() -> Iterator[Postgres]:
    """One PostgreSQL server for the test session (per worker)."""
    server = start()
    try:
        yield server
    finally:
        stop(server)


@pytest.fixture
def pg_dsn(postgres: Postgres) -> Iterator[str]:
    """A fresh, empty database of its own for one test; dropped afterwards."""
    name = f"t_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(postgres.dsn(), autocommit=True) as admin:
        admin.execute(f"CREATE DATABASE {name}")
    try:
        yield postgres.dsn(name)
    finally:
        with psycopg.connect(postgres.dsn(), autocommit=True) as admin:
            for (slot,) in admin.execute(
                "SELECT slot_name FROM pg_replication_slots WHERE database = %s", (name,)
            ).fetchall():
                with contextlib.suppress(psycopg.Error):
                    admin.execute("SELECT pg_drop_replication_slot(%s)", (slot,))
            admin.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
