"""Topics: create with settings, list, describe, alter, grow and delete."""

from __future__ import annotations

import pytest

import tidings
from tidings import InvalidPartitionsError, TopicExistsError, TopicNotFoundError
from tidings.engines.base import Capability

from .helpers import read_partition


@pytest.mark.needs(Capability.COMPACTION)
def test_create_topic_returns_spec_with_settings(bus: tidings.Bus) -> None:
    spec = bus.create_topic(
        "orders",
        partitions=3,
        retention_ms=60_000,
        retention_bytes=1 << 20,
        segment_ms=3_600_000,
        segment_bytes=1 << 21,
        cleanup_policy="compact,delete",
        max_message_bytes=4096,
        min_compaction_lag_ms=5,
        delete_retention_ms=7,
    )
    assert spec.name == "orders"
    assert spec.partitions == 3
    assert spec.config.to_dict() == {
        "retention_ms": 60_000,
        "retention_bytes": 1 << 20,
        "segment_ms": 3_600_000,
        "segment_bytes": 1 << 21,
        "cleanup_policy": "compact,delete",
        "max_message_bytes": 4096,
        "min_compaction_lag_ms": 5,
        "delete_retention_ms": 7,
    }


def test_defaults(bus: tidings.Bus) -> None:
    spec = bus.create_topic("events")
    assert spec.partitions == 1
    assert spec.config.cleanup_policy == "delete"
    assert spec.config.max_message_bytes == 1 << 20
    assert spec.config.retention_ms == 7 * 86_400_000


def test_list_topics_sorted_by_name(bus: tidings.Bus) -> None:
    assert bus.list_topics() == []
    bus.create_topic("b", partitions=2)
    bus.create_topic("a")
    listed = bus.list_topics()
    assert [(t.name, t.partitions) for t in listed] == [("a", 1), ("b", 2)]


def test_describe_new_topic_has_empty_partitions(bus: tidings.Bus) -> None:
    bus.create_topic("orders", partitions=3, retention_ms=1000)
    d = bus.describe_topic("orders")
    assert d.name == "orders"
    assert d.spec.config.retention_ms == 1000
    assert [(p.partition, p.start_offset, p.end_offset) for p in d.partitions] == [
        (0, 0, 0),
        (1, 0, 0),
        (2, 0, 0),
    ]
    assert d.records == 0


@pytest.mark.needs(Capability.PARTITION_SIZES)
def test_describe_shows_end_offsets_and_size(bus: tidings.Bus) -> None:
    bus.create_topic("orders", partitions=2)
    for i in range(3):
        bus.publish("orders", b"x%d" % i, partition=1)
    d = bus.describe_topic("orders")
    assert [(p.start_offset, p.end_offset) for p in d.partitions] == [(0, 0), (0, 3)]
    assert d.partitions[0].size_bytes == 0
    assert d.partitions[1].size_bytes > 0
    assert d.records == 3


@pytest.mark.needs(Capability.COMPACTION)
def test_alter_topic_changes_only_named_settings(bus: tidings.Bus) -> None:
    bus.create_topic("orders", partitions=2, retention_ms=1000, max_message_bytes=100)
    altered = bus.alter_topic("orders", retention_ms=None, cleanup_policy="compact")
    assert altered.partitions == 2
    assert altered.config.retention_ms is None
    assert altered.config.cleanup_policy == "compact"
    assert altered.config.max_message_bytes == 100
    assert bus.describe_topic("orders").spec == altered
    assert [t for t in bus.list_topics() if t.name == "orders"] == [altered]


def test_altered_max_message_bytes_applies_to_publish(bus: tidings.Bus) -> None:
    bus.create_topic("orders", max_message_bytes=10)
    with pytest.raises(tidings.RecordTooLargeError):
        bus.publish("orders", b"x" * 20)
    bus.alter_topic("orders", max_message_bytes=100)
    assert bus.publish("orders", b"x" * 20).offset == 0


@pytest.mark.needs(Capability.ADD_PARTITIONS)
def test_add_partitions_grows_and_keeps_records(bus: tidings.Bus) -> None:
    bus.create_topic("orders", partitions=2)
    bus.publish("orders", b"a", partition=0)
    bus.publish("orders", b"b", partition=1)
    spec = bus.add_partitions("orders", 5)
    assert spec.partitions == 5
    d = bus.describe_topic("orders")
    assert [p.end_offset for p in d.partitions] == [1, 1, 0, 0, 0]
    assert bus.publish("orders", b"c", partition=4).offset == 0
    assert [r.value for r in read_partition(bus, "orders", 0)] == [b"a"]


@pytest.mark.parametrize("total", [1, 2])
def test_add_partitions_only_grows(bus: tidings.Bus, total: int) -> None:
    bus.create_topic("orders", partitions=2)
    with pytest.raises(InvalidPartitionsError):
        bus.add_partitions("orders", total)
    assert bus.describe_topic("orders").spec.partitions == 2


def test_delete_topic_removes_records_and_name_is_reusable(bus: tidings.Bus) -> None:
    bus.create_topic("orders", partitions=2)
    bus.publish("orders", b"old", partition=0)
    bus.delete_topic("orders")
    assert bus.list_topics() == []
    with pytest.raises(TopicNotFoundError):
        bus.describe_topic("orders")
    bus.create_topic("orders", partitions=1)
    d = bus.describe_topic("orders")
    assert [(p.start_offset, p.end_offset) for p in d.partitions] == [(0, 0)]
    assert bus.publish("orders", b"new").offset == 0
    assert [r.value for r in read_partition(bus, "orders")] == [b"new"]


def test_create_existing_topic_raises_and_keeps_it(bus: tidings.Bus) -> None:
    bus.create_topic("orders", partitions=2, retention_ms=1000)
    bus.publish("orders", b"kept", partition=0)
    with pytest.raises(TopicExistsError) as info:
        bus.create_topic("orders", partitions=3)
    assert info.value.topic == "orders"
    d = bus.describe_topic("orders")
    assert d.spec.partitions == 2
    assert d.spec.config.retention_ms == 1000
    assert d.records == 1


def test_create_with_exist_ok_returns_existing_spec(bus: tidings.Bus) -> None:
    bus.create_topic("orders", partitions=2, retention_ms=1000)
    bus.publish("orders", b"kept", partition=0)
    spec = bus.create_topic("orders", partitions=5, exist_ok=True)
    assert spec.partitions == 2
    assert spec.config.retention_ms == 1000
    assert bus.describe_topic("orders").records == 1
