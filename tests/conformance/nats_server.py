"""A fresh nats-server with JetStream for each conformance test on the nats engine.

A server starts in a few tens of milliseconds, so every test gets an empty one (the
tests use fixed topic and group names) with its store under the test's tmp_path.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

from bench import nats_server


def fresh_nats_url(tmp_path: Path) -> Iterator[str]:
    """The URL of an empty nats-server, stopped after the test."""
    with nats_server.running(tmp_path / "nats") as server:
        yield server.url
