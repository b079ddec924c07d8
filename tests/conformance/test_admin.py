"""The bus as a whole: opening, closing, listing groups, and lag as the log grows."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import pytest

import tidings
from tidings import TopicPartition
from tidings.engines.base import Capability

from .helpers import eventually, tansu_group_admin, tansu_latest_offsets

CLOSED_BUS_CALLS: dict[str, Callable[[tidings.Bus], object]] = {
    "create_topic": lambda bus: bus.create_topic("other"),
    "list_topics": lambda bus: bus.list_topics(),
    "describe_topic": lambda bus: bus.describe_topic("orders"),
    "publish": lambda bus: bus.publish("orders", b"v"),
    "producer": lambda bus: bus.producer(),
    "consumer": lambda bus: bus.consumer("orders", group="g"),
    "list_groups": lambda bus: bus.list_groups(),
    "maintain": lambda bus: bus.maintain(),
}


def test_connect_as_context_manager(bus_url: str) -> None:
    with tidings.connect(bus_url) as bus:
        bus.create_topic("orders")
        assert bus.publish("orders", b"v").offset == 0


def test_closed_bus_refuses_work(bus_url: str, subtests: pytest.Subtests) -> None:
    bus = tidings.connect(bus_url)
    bus.create_topic("orders")
    bus.close()
    bus.close()  # closing twice is harmless
    for what, call in CLOSED_BUS_CALLS.items():
        with subtests.test(call=what), pytest.raises(tidings.ClosedError):
            call(bus)


def test_close_flushes_pending_sends(bus_url: str) -> None:
    bus = tidings.connect(bus_url)
    bus.create_topic("orders")
    producer = bus.producer(linger_ms=60_000)
    future = producer.send("orders", b"v")
    producer.close()
    bus.close()
    assert future.result(timeout=0).offset == 0


def test_close_closes_the_consumers_and_producers_of_the_bus(bus_url: str) -> None:
    bus = tidings.connect(bus_url)
    bus.create_topic("orders")
    bus.publish("orders", b"old")
    consumer = bus.consumer("orders", group="g", from_beginning=True)
    assert len(consumer.poll(timeout_ms=1000)) == 1
    producer = bus.producer(linger_ms=60_000)
    future = producer.send("orders", b"pending")
    durable = Capability.DURABLE in bus.engine.capabilities
    bus.close()
    assert future.result(timeout=0).offset == 1  # flushed
    if durable:  # the consumer committed on close and left the group
        with tidings.connect(bus_url) as again:
            group = again.describe_group("g")
            assert (group.members, group.partitions[0].committed) == ((), 1)
    with pytest.raises(tidings.ClosedError):
        consumer.poll(timeout_ms=10)


@tansu_group_admin
def test_list_groups_shows_groups_with_members_or_offsets(bus: tidings.Bus) -> None:
    bus.create_topic("orders")
    bus.publish("orders", b"v")
    assert bus.list_groups() == []
    with bus.consumer("orders", group="b", from_beginning=True) as b:
        assert bus.list_groups() == ["b"]
        with bus.consumer("orders", group="a", auto_commit=False):
            assert bus.list_groups() == ["a", "b"]
        assert len(b.poll(timeout_ms=1000)) == 1
    # "b" committed on close and is kept; "a" never committed and is gone with its member
    assert bus.list_groups() == ["b"]
    with pytest.raises(tidings.GroupNotFoundError):
        bus.describe_group("a")


@tansu_latest_offsets
def test_lag_follows_the_log(bus: tidings.Bus) -> None:
    bus.create_topic("orders", partitions=2)
    tp0 = TopicPartition("orders", 0)
    with bus.consumer(
        "orders", group="g", auto_commit=False, session_timeout_ms=1000, heartbeat_interval_ms=50
    ) as consumer:
        eventually(lambda: len(consumer.assignment()) == 2, what="the assignment")
        consumer.commit({tp0: 0})
        assert bus.describe_group("g").lag == 0
        bus.publish_many("orders", [b"v"] * 7, partition=0)
        bus.publish_many("orders", [b"v"] * 3, partition=1)
        d = bus.describe_group("g")
        assert [(p.partition, p.end_offset, p.lag) for p in d.partitions] == [(0, 7, 7), (1, 3, 3)]
        assert d.lag == 10
        consumer.commit({tp0: 5})
        assert bus.describe_group("g").partitions[0].lag == 2


def test_describe_group_over_many_topics(bus: tidings.Bus) -> None:
    bus.create_topic("orders", partitions=2)
    bus.create_topic("payments")
    bus.publish("payments", b"v")
    with bus.consumer("orders", "payments", group="g", from_beginning=True) as consumer:
        while consumer.poll(timeout_ms=100):
            pass
    d = bus.describe_group("g")
    assert [(p.topic, p.partition, p.committed) for p in d.partitions] == [
        ("orders", 0, 0),
        ("orders", 1, 0),
        ("payments", 0, 1),
    ]


def test_describe_group_after_its_topic_is_deleted(bus: tidings.Bus) -> None:
    bus.create_topic("orders")
    bus.create_topic("payments")
    bus.publish("orders", b"v")
    bus.publish("payments", b"v")
    with bus.consumer("orders", "payments", group="g", from_beginning=True) as consumer:
        while consumer.poll(timeout_ms=100):
            pass
    bus.delete_topic("payments")
    d = bus.describe_group("g")
    assert [(p.topic, p.committed) for p in d.partitions] == [("orders", 1)]


@pytest.mark.needs(Capability.CLEANUP_ON_DEMAND)
def test_maintain_on_an_empty_bus(bus: tidings.Bus) -> None:
    bus.maintain()
    assert bus.list_topics() == []


def test_close_closes_the_engine_even_if_a_child_fails_to(
    bus_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    bus = tidings.connect(bus_url)
    bus.create_topic("orders")
    failing = bus.producer()
    flush = failing.aio.close

    async def failing_close() -> None:
        await flush()
        raise tidings.StoreError("the disk went away")

    monkeypatch.setattr(failing.aio, "close", failing_close)
    producer = bus.producer(linger_ms=60_000)
    future = producer.send("orders", b"pending")
    with pytest.raises(tidings.StoreError, match="the disk went away"):
        bus.close()
    assert future.result(timeout=0).offset == 0  # the other producer was still flushed
    with pytest.raises(tidings.ClosedError):  # the engine closed
        asyncio.run(bus.engine.list_topics())
    with pytest.raises(tidings.ClosedError):  # and the background loop stopped
        bus.list_topics()
    bus.close()  # a second close has nothing left to do


def test_reset_offsets_closes_its_probe_when_the_lookup_fails(
    bus: tidings.Bus, monkeypatch: pytest.MonkeyPatch
) -> None:
    bus.create_topic("orders")
    engine = bus.engine
    make = engine.consumer
    closed: list[bool] = []

    class FailingProbe:
        def __init__(self, inner: Any) -> None:
            self.inner = inner

        async def offsets_for_times(self, times: Any) -> Any:
            raise tidings.StoreError("lookup failed")

        async def close(self) -> None:
            await self.inner.close()
            closed.append(True)

    monkeypatch.setattr(engine, "consumer", lambda config: FailingProbe(make(config)))
    with pytest.raises(tidings.StoreError, match="lookup failed"):
        bus.reset_offsets("g", "orders", timestamp_ms=0)
    assert closed == [True]
