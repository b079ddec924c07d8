"""The cleaner against a LogStore: compaction races retention, and reads in pages.

These reach into the store under the memory and sqlite engines, so they live beside the
unit tests rather than in the engine-neutral conformance suite.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import tidings
from tests.conformance.test_compaction import HOUR_MS, now_ms, survivors
from tidings.engines.log import cleaner
from tidings.engines.log.store import LogStore, StoredBatch


@pytest.fixture(params=["memory", "sqlite"])
def bus(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[tidings.Bus]:
    """A bus on each engine that keeps its log in a LogStore."""
    url = "memory://" if request.param == "memory" else f"sqlite://{tmp_path}/bus.db"
    with tidings.connect(url) as b:
        yield b


def log_store(bus: tidings.Bus) -> LogStore:
    """The LogStore under the bus's engine."""
    store = getattr(bus.engine, "store", None)
    assert isinstance(store, LogStore)
    return store


def store_batches(bus: tidings.Bus, batches: list[list[tuple[bytes, bytes]]], ts: int) -> None:
    """Store each list of (key, value) records as one batch, all with timestamp `ts`."""
    with bus.producer(linger_ms=60_000) as producer:
        for batch in batches:
            for key, value in batch:
                producer.send("users", value, key=key, timestamp=ts)
            producer.flush()


def test_compaction_never_restores_batches_retention_deleted_meanwhile(
    bus: tidings.Bus, monkeypatch: pytest.MonkeyPatch
) -> None:
    bus.create_topic("users", cleanup_policy="compact")
    store_batches(
        bus, [[(b"a", b"a1"), (b"x", b"x1")], [(b"a", b"a2"), (b"y", b"y1")]], now_ms() - HOUR_MS
    )
    store = log_store(bus)
    replace = store.replace_batches

    def truncated_first(topic: str, partition: int, *args: Any) -> None:
        # another process's retention deletes the first batch after compaction read it
        store.truncate_before(topic, partition, 2)
        replace(topic, partition, *args)

    monkeypatch.setattr(store, "replace_batches", truncated_first)
    bus.maintain()
    state = bus.describe_topic("users").partitions[0]
    index = store.batch_index("users", 0)
    assert state.start_offset == 2
    assert [(m.base_offset, m.last_offset) for m in index] == [(2, 3)]
    assert state.size_bytes == sum(m.size for m in index)
    assert survivors(bus) == [(2, b"a", b"a2"), (3, b"y", b"y1")]


def test_compaction_reads_a_page_at_a_time(
    bus: tidings.Bus, monkeypatch: pytest.MonkeyPatch
) -> None:
    bus.create_topic("users", cleanup_policy="compact")
    store_batches(
        bus,
        [[(b"k%d" % (i % 3), b"%d.%d" % (i, j)) for j in range(2)] for i in range(12)],
        now_ms() - HOUR_MS,
    )
    store = log_store(bus)
    read = store.read
    asked: list[int] = []

    def spied(topic: str, partition: int, offset: int, max_bytes: int) -> list[StoredBatch]:
        asked.append(max_bytes)
        return read(topic, partition, offset, max_bytes)

    monkeypatch.setattr(cleaner, "PAGE_BYTES", 100)
    monkeypatch.setattr(store, "read", spied)
    bus.maintain()
    monkeypatch.undo()
    assert len(asked) > 2
    assert max(asked) <= 100
    assert survivors(bus) == [(19, b"k0", b"9.1"), (21, b"k1", b"10.1"), (23, b"k2", b"11.1")]
