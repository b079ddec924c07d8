"""Compaction: the latest record per key survives at its offset; tombstones go after a delay."""

from __future__ import annotations

import time

import pytest

import tidings
from tidings.engines.base import Capability

from .helpers import read_partition

HOUR_MS = 3_600_000


def now_ms() -> int:
    """Wall-clock milliseconds."""
    return time.time_ns() // 1_000_000


def store(bus: tidings.Bus, records: list[tuple[bytes | None, bytes | None]], ts: int) -> None:
    """Store (key, value) records one batch at a time, all with timestamp `ts`."""
    for key, value in records:
        bus.publish("users", value, key=key, timestamp=ts, headers={"n": b"h"})


def survivors(bus: tidings.Bus) -> list[tuple[int, bytes | None, bytes | None]]:
    """(offset, key, value) of every record left in the partition."""
    return [(r.offset, r.key, r.value) for r in read_partition(bus, "users")]


@pytest.mark.needs(Capability.COMPACTION)
@pytest.mark.needs(Capability.CLEANUP_ON_DEMAND)
def test_latest_record_per_key_survives_at_its_offset(bus: tidings.Bus) -> None:
    bus.create_topic("users", cleanup_policy="compact")
    old = now_ms() - HOUR_MS
    store(bus, [(b"a", b"a1"), (b"b", b"b1"), (b"a", b"a2"), (b"c", b"c1"), (b"b", b"b2")], old)
    bus.maintain()
    assert survivors(bus) == [(2, b"a", b"a2"), (3, b"c", b"c1"), (4, b"b", b"b2")]
    d = bus.describe_topic("users").partitions[0]
    assert d.end_offset == 5
    assert bus.publish("users", b"a3", key=b"a").offset == 5


@pytest.mark.needs(Capability.COMPACTION)
@pytest.mark.needs(Capability.CLEANUP_ON_DEMAND)
def test_compaction_within_one_batch_keeps_record_fields(bus: tidings.Bus) -> None:
    bus.create_topic("users", cleanup_policy="compact")
    old = now_ms() - HOUR_MS
    with bus.producer() as producer:
        for i, key in enumerate([b"a", b"b", b"a", b"b", b"a"]):
            producer.send(
                "users", b"%d" % i, key=key, timestamp=old + i, headers=[("i", b"%d" % i)]
            )
    bus.maintain()
    records = read_partition(bus, "users")
    assert [(r.offset, r.key, r.value, r.timestamp, r.headers) for r in records] == [
        (3, b"b", b"3", old + 3, (("i", b"3"),)),
        (4, b"a", b"4", old + 4, (("i", b"4"),)),
    ]


@pytest.mark.needs(Capability.COMPACTION)
@pytest.mark.needs(Capability.CLEANUP_ON_DEMAND)
def test_unkeyed_records_are_kept(bus: tidings.Bus) -> None:
    bus.create_topic("users", cleanup_policy="compact")
    old = now_ms() - HOUR_MS
    store(bus, [(None, b"x"), (b"a", b"a1"), (None, b"y"), (b"a", b"a2")], old)
    bus.maintain()
    assert survivors(bus) == [(0, None, b"x"), (2, None, b"y"), (3, b"a", b"a2")]


@pytest.mark.needs(Capability.COMPACTION)
@pytest.mark.needs(Capability.CLEANUP_ON_DEMAND)
def test_compaction_is_stable_when_repeated(bus: tidings.Bus) -> None:
    bus.create_topic("users", cleanup_policy="compact")
    old = now_ms() - HOUR_MS
    store(bus, [(b"a", b"a1"), (b"a", b"a2"), (b"b", b"b1")], old)
    bus.maintain()
    first = survivors(bus)
    bus.maintain()
    assert survivors(bus) == first == [(1, b"a", b"a2"), (2, b"b", b"b1")]
    store(bus, [(b"b", b"b2")], old)
    bus.maintain()
    assert survivors(bus) == [(1, b"a", b"a2"), (3, b"b", b"b2")]


@pytest.mark.needs(Capability.COMPACTION)
@pytest.mark.needs(Capability.CLEANUP_ON_DEMAND)
def test_tombstone_survives_delete_retention(bus: tidings.Bus) -> None:
    bus.create_topic("users", cleanup_policy="compact", delete_retention_ms=2 * HOUR_MS)
    old = now_ms() - HOUR_MS
    store(bus, [(b"a", b"a1"), (b"b", b"b1"), (b"a", None)], old)
    bus.maintain()
    assert survivors(bus) == [(1, b"b", b"b1"), (2, b"a", None)]


@pytest.mark.needs(Capability.COMPACTION)
@pytest.mark.needs(Capability.CLEANUP_ON_DEMAND)
def test_tombstone_is_dropped_after_delete_retention(bus: tidings.Bus) -> None:
    bus.create_topic("users", cleanup_policy="compact", delete_retention_ms=0)
    old = now_ms() - HOUR_MS
    store(bus, [(b"a", b"a1"), (b"b", b"b1"), (b"a", None)], old)
    bus.maintain()
    assert bus.describe_topic("users").partitions[0].end_offset == 3
    assert bus.publish("users", b"a2", key=b"a").offset == 3
    assert survivors(bus) == [(1, b"b", b"b1"), (3, b"a", b"a2")]


@pytest.mark.needs(Capability.COMPACTION)
@pytest.mark.needs(Capability.CLEANUP_ON_DEMAND)
def test_records_newer_than_min_compaction_lag_are_kept(bus: tidings.Bus) -> None:
    bus.create_topic("users", cleanup_policy="compact", min_compaction_lag_ms=HOUR_MS)
    recent = now_ms() - 60_000
    store(bus, [(b"a", b"a1"), (b"a", b"a2"), (b"a", b"a3")], recent)
    bus.maintain()
    assert survivors(bus) == [(0, b"a", b"a1"), (1, b"a", b"a2"), (2, b"a", b"a3")]
    bus.alter_topic("users", min_compaction_lag_ms=0)
    bus.maintain()
    assert survivors(bus) == [(2, b"a", b"a3")]


@pytest.mark.needs(Capability.COMPACTION)
@pytest.mark.needs(Capability.CLEANUP_ON_DEMAND)
def test_compaction_lag_protects_only_recent_records(bus: tidings.Bus) -> None:
    bus.create_topic("users", cleanup_policy="compact", min_compaction_lag_ms=HOUR_MS)
    store(bus, [(b"a", b"old1"), (b"a", b"old2")], now_ms() - 2 * HOUR_MS)
    store(bus, [(b"a", b"new1"), (b"a", b"new2")], now_ms())
    bus.maintain()
    assert survivors(bus) == [(2, b"a", b"new1"), (3, b"a", b"new2")]


@pytest.mark.needs(Capability.COMPACTION)
@pytest.mark.needs(Capability.CLEANUP_ON_DEMAND)
def test_delete_policy_does_not_compact(bus: tidings.Bus) -> None:
    bus.create_topic("users", cleanup_policy="delete", retention_ms=None)
    store(bus, [(b"a", b"a1"), (b"a", b"a2")], now_ms() - HOUR_MS)
    bus.maintain()
    assert survivors(bus) == [(0, b"a", b"a1"), (1, b"a", b"a2")]


@pytest.mark.needs(Capability.COMPACTION)
@pytest.mark.needs(Capability.CLEANUP_ON_DEMAND)
def test_compact_and_delete_does_both(bus: tidings.Bus) -> None:
    bus.create_topic("users", cleanup_policy="compact,delete", retention_ms=HOUR_MS, segment_ms=0)
    store(bus, [(b"a", b"a1"), (b"b", b"b1")], now_ms() - 2 * HOUR_MS)
    store(bus, [(b"c", b"c1"), (b"c", b"c2")], now_ms() - 60_000)
    bus.maintain()
    assert survivors(bus) == [(3, b"c", b"c2")]
    assert bus.describe_topic("users").partitions[0].start_offset == 2


@pytest.mark.needs(Capability.COMPACTION)
@pytest.mark.needs(Capability.CLEANUP_ON_DEMAND)
def test_group_reading_a_compacted_topic_skips_the_gaps(bus: tidings.Bus) -> None:
    bus.create_topic("users", cleanup_policy="compact")
    store(bus, [(b"a", b"a1"), (b"b", b"b1"), (b"a", b"a2"), (b"b", b"b2")], now_ms() - HOUR_MS)
    bus.maintain()
    with bus.consumer("users", group="g", from_beginning=True) as consumer:
        got = []
        while batch := consumer.poll(timeout_ms=100):
            got.extend(batch)
    assert [(r.offset, r.value) for r in got] == [(2, b"a2"), (3, b"b2")]
    d = bus.describe_group("g")
    assert [(p.committed, p.lag) for p in d.partitions] == [(4, 0)]
