"""Bad input: a clear error naming the problem, nothing stored is touched, the bus goes on."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

import tidings
from tidings import (
    InvalidPartitionsError,
    InvalidTopicError,
    PartitionNotFoundError,
    TopicNotFoundError,
    TopicPartition,
)

from .helpers import read_all

Snapshot = tuple[Any, ...]


def snapshot(bus: tidings.Bus) -> Snapshot:
    """Everything a user can observe of the bus's stored state."""
    topics = bus.list_topics()
    return (
        topics,
        [bus.describe_topic(t.name) for t in topics],
        [read_all(bus, t.name) for t in topics],
        [bus.describe_group(g).partitions for g in bus.list_groups()],
    )


@pytest.fixture
def records(bus: tidings.Bus) -> None:
    """The bus holds a topic with records and a group with committed offsets."""
    bus.create_topic("orders", partitions=2, retention_ms=None)
    bus.publish_many("orders", [b"%d" % i for i in range(6)], keys=[b"%d" % i for i in range(6)])
    with bus.consumer("orders", group="g", from_beginning=True) as consumer:
        while consumer.poll(max_records=2, timeout_ms=100):
            pass


def unchanged(bus: tidings.Bus, before: Snapshot) -> None:
    """The stored state is as before, and the bus still publishes and reads."""
    assert snapshot(bus) == before
    meta = bus.publish("orders", b"after", partition=0)
    assert read_all(bus, "orders")[meta.offset].value == b"after"


BAD_NAMES = [
    "",
    ".",
    "..",
    "a" * 250,
    "has space",
    "slash/name",
    "star*",
    "ümlaut",
    "tab\t",
    "colon:name",
]


@pytest.mark.usefixtures("records")
def test_invalid_topic_name_is_refused(bus: tidings.Bus, subtests: pytest.Subtests) -> None:
    for name in BAD_NAMES:
        with subtests.test(name=name):
            before = snapshot(bus)
            with pytest.raises(InvalidTopicError) as info:
                bus.create_topic(name)
            assert isinstance(info.value, ValueError)
            assert info.value.topic == name
            assert repr(name) in str(info.value)
            unchanged(bus, before)


def test_valid_topic_names_are_accepted(bus: tidings.Bus) -> None:
    names = ["a", "a" * 249, "Orders.v1_x-2", "...", "_", "-"]
    for name in names:
        bus.create_topic(name)
        assert bus.publish(name, b"v").topic == name
    assert sorted(t.name for t in bus.list_topics()) == sorted(names)


@pytest.mark.usefixtures("records")
def test_non_string_topic_name_is_refused(bus: tidings.Bus) -> None:
    before = snapshot(bus)
    with pytest.raises(InvalidTopicError):
        bus.create_topic(42)  # type: ignore[arg-type]
    unchanged(bus, before)


UNKNOWN_TOPIC_CALLS: dict[str, Callable[[tidings.Bus], object]] = {
    "publish": lambda bus: bus.publish("missing", b"v"),
    "publish_many": lambda bus: bus.publish_many("missing", [b"v"]),
    "send": lambda bus: bus.producer().send("missing", b"v"),
    "send_many": lambda bus: bus.producer().send_many("missing", [b"v"]),
    "consume": lambda bus: bus.consumer("missing", group="g2"),
    "consume_many": lambda bus: bus.consumer("orders", "missing", group="g2"),
    "assign": lambda bus: bus.consumer().assign(TopicPartition("missing", 0)),
    "describe": lambda bus: bus.describe_topic("missing"),
    "alter": lambda bus: bus.alter_topic("missing", retention_ms=1),
    "add_partitions": lambda bus: bus.add_partitions("missing", 3),
    "delete": lambda bus: bus.delete_topic("missing"),
    "reset_offsets": lambda bus: bus.reset_offsets("g", "missing", to="earliest"),
}


@pytest.mark.usefixtures("records")
def test_unknown_topic_is_named(bus: tidings.Bus, subtests: pytest.Subtests) -> None:
    for what, call in UNKNOWN_TOPIC_CALLS.items():
        with subtests.test(call=what):
            before = snapshot(bus)
            with pytest.raises(TopicNotFoundError) as info:
                call(bus)
            assert info.value.topic == "missing"
            assert "'missing'" in str(info.value)
            assert "create" in str(info.value)
            unchanged(bus, before)


@pytest.mark.usefixtures("records")
def test_unknown_partition_is_refused(bus: tidings.Bus) -> None:
    before = snapshot(bus)
    with pytest.raises(PartitionNotFoundError) as info:
        bus.publish("orders", b"v", partition=2)
    assert (info.value.topic, info.value.partition, info.value.partitions) == ("orders", 2, 2)
    with pytest.raises(PartitionNotFoundError):
        bus.publish("orders", b"v", partition=-1)
    with pytest.raises(PartitionNotFoundError):
        bus.publish_many("orders", [b"v"], partition=5)
    consumer = bus.consumer()
    try:
        with pytest.raises(PartitionNotFoundError):
            consumer.assign(TopicPartition("orders", 2))
    finally:
        consumer.close()
    unchanged(bus, before)


@pytest.mark.usefixtures("records")
def test_invalid_partition_count_is_refused(bus: tidings.Bus, subtests: pytest.Subtests) -> None:
    for partitions in [0, -1, 1.5, "2", None, True]:
        with subtests.test(partitions=partitions):
            before = snapshot(bus)
            with pytest.raises(InvalidPartitionsError) as info:
                bus.create_topic("new", partitions=partitions)  # type: ignore[arg-type]
            assert isinstance(info.value, ValueError)
            assert repr(partitions) in str(info.value)
            with pytest.raises(InvalidPartitionsError):
                bus.add_partitions("orders", partitions)  # type: ignore[arg-type]
            unchanged(bus, before)


@pytest.mark.usefixtures("records")
def test_unknown_setting_is_refused(bus: tidings.Bus) -> None:
    before = snapshot(bus)
    with pytest.raises(tidings.ConfigurationError, match="retention_hours") as info:
        bus.create_topic("new", retention_hours=1)
    assert "retention_ms" in str(info.value)  # the message lists the known settings
    with pytest.raises(tidings.ConfigurationError, match="compression"):
        bus.alter_topic("orders", compression="zstd")
    unchanged(bus, before)


BAD_SETTINGS: list[tuple[str, object]] = [
    ("cleanup_policy", "forever"),
    ("retention_ms", -1),
    ("retention_bytes", -5),
    ("retention_ms", "1d"),
    ("max_message_bytes", -1),
    ("min_compaction_lag_ms", -1),
    ("delete_retention_ms", None),
]


@pytest.mark.usefixtures("records")
def test_invalid_setting_value_is_refused(bus: tidings.Bus, subtests: pytest.Subtests) -> None:
    for name, value in BAD_SETTINGS:
        setting: dict[str, Any] = {name: value}
        with subtests.test(setting=name, value=value):
            before = snapshot(bus)
            with pytest.raises(tidings.ConfigurationError, match=name):
                bus.create_topic("new", **setting)
            with pytest.raises(tidings.ConfigurationError, match=name):
                bus.alter_topic("orders", **setting)
            unchanged(bus, before)


BAD_CONSUMER_OPTIONS: list[dict[str, Any]] = [
    {"auto_offset_reset": "middle"},
    {"strategy": "sticky"},
    {"session_timeout_ms": 100, "heartbeat_interval_ms": 100},
    {"heartbeat_interval_ms": 0},
]


@pytest.mark.usefixtures("records")
def test_invalid_consumer_options_are_refused(bus: tidings.Bus, subtests: pytest.Subtests) -> None:
    for options in BAD_CONSUMER_OPTIONS:
        with subtests.test(**options):
            before = snapshot(bus)
            with pytest.raises(ValueError):
                bus.consumer("orders", group="g2", **options)
            unchanged(bus, before)
            assert bus.list_groups() == ["g"]


BAD_PRODUCER_OPTIONS: list[dict[str, Any]] = [
    {"linger_ms": -1},
    {"batch_size": 0},
    {"batch_size": 10, "buffer_memory": 5},
]


@pytest.mark.usefixtures("records")
def test_invalid_producer_options_are_refused(bus: tidings.Bus, subtests: pytest.Subtests) -> None:
    for options in BAD_PRODUCER_OPTIONS:
        with subtests.test(**options):
            before = snapshot(bus)
            with pytest.raises(ValueError):
                bus.producer(**options)
            unchanged(bus, before)


def test_errors_share_one_root(bus: tidings.Bus) -> None:
    with pytest.raises(tidings.TidingsError):
        bus.describe_topic("missing")
    with pytest.raises(tidings.TidingsError):
        bus.create_topic("bad name")
    with pytest.raises(tidings.TidingsError):
        bus.create_topic("t", partitions=0)
