"""Arguments checked where they enter: a typed error naming the argument, nothing stored,
and no other caller's records failed by one caller's mistake."""

from __future__ import annotations

import threading
from typing import Any

import pytest

import tidings
from tidings import (
    ConfigurationError,
    InvalidArgumentError,
    InvalidRecordError,
    TopicPartition,
)
from tidings.engines.base import Capability

from .helpers import read_all
from .test_bad_input import records, snapshot, unchanged  # noqa: F401 (a fixture)

BAD_PARTITIONS: list[object] = ["0", 1.0, 0.5, True, b"0"]
BAD_TIMESTAMPS: list[object] = [-5, "x", 1.5, 2**63, True, 1e12]


@pytest.mark.usefixtures("records")
def test_a_partition_that_is_not_an_int_is_refused_naming_it(
    bus: tidings.Bus, subtests: pytest.Subtests
) -> None:
    calls: dict[str, Any] = {
        "publish": lambda p: bus.publish("orders", b"v", partition=p),
        "publish with a key": lambda p: bus.publish("orders", b"v", key=b"k", partition=p),
        "send": lambda p: bus.producer().send("orders", b"v", partition=p),
        "publish_many": lambda p: bus.publish_many("orders", [b"v"], partition=p),
    }
    for bad in BAD_PARTITIONS:
        for what, call in calls.items():
            with subtests.test(call=what, partition=bad):
                before = snapshot(bus)
                with pytest.raises(InvalidArgumentError) as info:
                    call(bad)
                assert info.value.argument == "partition"
                assert info.value.value == bad
                assert "partition" in str(info.value) and repr(bad) in str(info.value)
                unchanged(bus, before)


@pytest.mark.usefixtures("records")
def test_a_timestamp_outside_kafkas_range_is_refused_naming_it(
    bus: tidings.Bus, subtests: pytest.Subtests
) -> None:
    for bad in BAD_TIMESTAMPS:
        with subtests.test(timestamp=bad):
            before = snapshot(bus)
            with pytest.raises(InvalidArgumentError) as info:
                bus.publish("orders", b"v", timestamp=bad)  # type: ignore[arg-type]
            assert info.value.argument == "timestamp"
            assert repr(bad) in str(info.value)
            with pytest.raises(InvalidArgumentError):
                bus.producer().send("orders", b"v", timestamp=bad)  # type: ignore[arg-type]
            unchanged(bus, before)
    meta = bus.publish("orders", b"then", partition=1, timestamp=1_700_000_000_000)
    assert meta.timestamp == 1_700_000_000_000


@pytest.mark.usefixtures("records")
def test_a_bad_key_value_or_header_is_refused_naming_it(
    bus: tidings.Bus, subtests: pytest.Subtests
) -> None:
    cases: list[tuple[str, dict[str, Any]]] = [
        ("value", {"value": "text"}),
        ("value", {"value": 5}),
        ("key", {"key": 5}),
        ("headers", {"headers": {"h": 5}}),
        ("headers", {"headers": [("only-a-name",)]}),
        ("headers", {"headers": {7: b"v"}}),
        ("headers", {"headers": {"n" * 70_000: b"v"}}),
        ("headers", {"headers": {"\udc80": b"v"}}),
    ]
    for argument, fields in cases:
        with subtests.test(argument=argument, fields=str(fields)[:40]):
            before = snapshot(bus)
            value = fields.pop("value", b"v")
            with pytest.raises(InvalidRecordError) as info:
                bus.publish("orders", value, **fields)
            assert info.value.argument == argument
            assert isinstance(info.value, InvalidArgumentError)
            assert isinstance(info.value, TypeError)  # as before the argument was named
            unchanged(bus, before)


@pytest.mark.usefixtures("records")
def test_an_empty_group_name_is_refused(bus: tidings.Bus, subtests: pytest.Subtests) -> None:
    calls: dict[str, Any] = {
        "consumer": lambda: bus.consumer("orders", group=""),
        "describe_group": lambda: bus.describe_group(""),
        "delete_group": lambda: bus.delete_group(""),
        "reset_offsets": lambda: bus.reset_offsets("", "orders", to="earliest"),
        "non-str": lambda: bus.consumer("orders", group=5),  # type: ignore[arg-type]
    }
    for what, call in calls.items():
        with subtests.test(call=what):
            before = snapshot(bus)
            with pytest.raises(InvalidArgumentError) as info:
                call()
            assert info.value.argument == "group"
            unchanged(bus, before)


@pytest.mark.usefixtures("records")
def test_a_max_message_bytes_of_zero_is_refused(bus: tidings.Bus) -> None:
    before = snapshot(bus)
    with pytest.raises(ConfigurationError, match="max_message_bytes"):
        bus.create_topic("new", max_message_bytes=0)
    with pytest.raises(ConfigurationError, match="max_message_bytes"):
        bus.alter_topic("orders", max_message_bytes=0)
    unchanged(bus, before)


@pytest.mark.needs(Capability.CONSUMER_GROUPS)
@pytest.mark.usefixtures("records")
def test_a_commit_of_an_offset_that_is_not_one_is_refused(
    bus: tidings.Bus, subtests: pytest.Subtests
) -> None:
    tp = TopicPartition("orders", 0)
    committed = committed_offsets(bus, "g")
    for bad in ["x", -7, 1.5, None, True, 2**63]:
        with subtests.test(offset=bad):
            before = snapshot(bus)
            with bus.consumer("orders", group="g") as consumer:
                with pytest.raises(InvalidArgumentError) as info:
                    consumer.commit({tp: bad})  # type: ignore[dict-item]
                assert info.value.argument == "offset"
                assert repr(bad) in str(info.value)
            unchanged(bus, before)
    with bus.consumer("orders", group="g") as consumer, pytest.raises(InvalidArgumentError):
        consumer.commit({("orders", "0"): 1})  # type: ignore[dict-item]
    with pytest.raises(InvalidArgumentError):
        bus.reset_offsets("g", "orders", offset=-7)
    assert committed_offsets(bus, "g") == committed  # readable, and as it was


def committed_offsets(bus: tidings.Bus, group: str) -> dict[int, int | None]:
    """A group's committed offset per partition, as describe_group reads it."""
    return {p.partition: p.committed for p in bus.describe_group(group).partitions}


def test_bad_publishes_never_fail_other_callers_records(bus: tidings.Bus) -> None:
    bus.create_topic("busy", partitions=2)
    threads, each = 4, 60
    failures: list[BaseException] = []
    refused: list[InvalidArgumentError] = []

    def good(n: int) -> None:
        try:
            for i in range(each):
                bus.publish("busy", b"%d-%d" % (n, i))
        except BaseException as e:
            failures.append(e)

    def bad() -> None:
        for i in range(each):
            for mistake in ({"partition": 0.5}, {"timestamp": 2**63}):
                try:
                    bus.publish("busy", b"bad-%d" % i, **mistake)
                except InvalidArgumentError as e:
                    refused.append(e)

    workers = [threading.Thread(target=good, args=(n,)) for n in range(threads)]
    workers.append(threading.Thread(target=bad))
    for w in workers:
        w.start()
    for w in workers:
        w.join()
    assert failures == []
    assert len(refused) == 2 * each
    stored = sorted(r.value for r in read_all(bus, "busy") if r.value is not None)
    assert stored == sorted(b"%d-%d" % (n, i) for n in range(threads) for i in range(each))
