"""A fresh nats-server for each test of the NATS engine."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from bench import nats_server


@pytest.fixture
def server(tmp_path: Path) -> Iterator[nats_server.NatsServer]:
    """A running nats-server with JetStream, its store under the test's tmp_path."""
    with nats_server.running(tmp_path / "nats") as running:
        yield running
