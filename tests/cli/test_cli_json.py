"""Commands that change something print, with --json, one document saying what they did."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

import tidings

from .test_cli import as_json


@pytest.fixture
def url(tmp_path: Path) -> str:
    """A fresh store."""
    return f"sqlite://{tmp_path}/bus.db"


DEFAULTS = {
    "retention.ms": 7 * 86_400_000,
    "retention.bytes": -1,
    "segment.ms": 7 * 86_400_000,
    "segment.bytes": 1 << 30,
    "cleanup.policy": "delete",
    "max.message.bytes": 1 << 20,
    "min.compaction.lag.ms": 0,
    "delete.retention.ms": 86_400_000,
}


def test_topic_create_alter_and_delete(url: str) -> None:
    created = as_json(url, "topics", "create", "orders", "--partitions", "2", "--retention-ms", "5")
    config = DEFAULTS | {"retention.ms": 5}
    assert created == {"name": "orders", "partitions": 2, "config": config, "created": True}
    again = as_json(url, "topics", "create", "orders", "--if-not-exists", "--retention-ms", "9")
    assert again == created | {"created": False}  # unchanged

    altered = as_json(
        url, "topics", "alter", "orders", "--partitions", "3", "--config", "cleanup.policy=compact"
    )
    assert altered == {
        "name": "orders",
        "partitions": 3,
        "config": config | {"cleanup.policy": "compact"},
        "changes": {
            "partitions": {"before": 2, "after": 3},
            "cleanup.policy": {"before": "delete", "after": "compact"},
        },
    }

    with tidings.connect(url) as bus:
        bus.publish("orders", b"a")
    deleted = as_json(url, "topics", "delete", "orders", "--yes")
    assert deleted == {"name": "orders", "partitions": 3, "records": 1, "deleted": True}
    assert as_json(url, "topics", "list") == []


def test_group_reset_and_delete(url: str) -> None:
    with tidings.connect(url) as bus:
        bus.create_topic("orders")
        for value in (b"a", b"b"):
            bus.publish("orders", value)
    reset = as_json(url, "groups", "reset-offsets", "billing", "--topic", "orders", "--to-latest")
    assert reset == [{"topic": "orders", "partition": 0, "offset": 2}]
    deleted = as_json(url, "groups", "delete", "billing", "-y")
    assert deleted == {
        "group": "billing",
        "deleted": True,
        "offsets": [{"topic": "orders", "partition": 0, "committed": 2}],
    }
    assert as_json(url, "groups", "list") == []


def test_queue_redrive_and_purge(url: str) -> None:
    with tidings.connect(url) as bus:
        queue = bus.queue("jobs", group="workers", dead_letter_topic="jobs.dlq")
        for value in (b"bad", b"good"):
            queue.send(value)
        jobs: list[tidings.Job] = []
        deadline = time.monotonic() + 5
        while not jobs and time.monotonic() < deadline:
            jobs = queue.receive(max_records=1, timeout_ms=100)
        jobs[0].reject("broken")
        queue.close()
    redriven = as_json(url, "queues", "redrive", "jobs", "-g", "workers")
    assert redriven == {
        "group": "workers",
        "topic": "jobs",
        "dead_letter_topic": "jobs.dlq",
        "redriven": 1,
    }
    purged = as_json(url, "queues", "purge", "jobs", "-g", "workers", "--yes")
    assert purged == {"group": "workers", "topic": "jobs", "purged": 2}
