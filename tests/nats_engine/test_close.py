"""Closing a bus on NATS leaves nothing running behind it."""

from __future__ import annotations

import gc
import logging

import pytest
from bench import nats_server

import tidings


def _read_and_close(url: str) -> None:
    with tidings.connect(url) as bus:
        bus.create_topic("orders")
        bus.publish_many("orders", [b"x"] * 10)
        with bus.consumer("orders", group="g", from_beginning=True) as consumer:
            got = 0
            while got < 10:
                got += len(consumer.poll(timeout_ms=5000))


def test_a_closed_sync_bus_leaves_no_task_pending(
    server: nats_server.NatsServer, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.ERROR, logger="asyncio"):
        _read_and_close(server.url)
        gc.collect()  # a task destroyed while pending logs an error as it is collected
    assert not [r for r in caplog.records if "destroyed but it is pending" in r.getMessage()]
