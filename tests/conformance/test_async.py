"""The async core: the same semantics through connect_async, async with and async for."""

from __future__ import annotations

import asyncio
import time

import pytest

import tidings
from tidings import TopicPartition
from tidings.engines.base import Capability

from .helpers import run_async, tansu_group_admin, tansu_latest_offsets, tansu_offsets_for_times


@tansu_latest_offsets
def test_topics_and_publish(bus_url: str) -> None:
    async def scenario(bus: tidings.AsyncBus) -> None:
        await bus.create_topic("orders", partitions=2, retention_ms=1000)
        assert [t.name for t in await bus.list_topics()] == ["orders"]
        meta = await bus.publish("orders", b"v", key=b"foobar", headers={"h": b"1"}, timestamp=7)
        foobar = (-790332482 & 0x7FFFFFFF) % 2  # Kafka's partition for this key
        assert (meta.partition, meta.offset, meta.timestamp) == (foobar, 0, 7)
        metas = await bus.publish_many("orders", [b"a", b"b"], partition=1)
        assert [m.offset for m in metas] == [0, 1]
        d = await bus.describe_topic("orders")
        assert [p.end_offset for p in d.partitions] == [1, 2]

    run_async(bus_url, scenario)


def test_producer_futures_are_awaitable(bus_url: str) -> None:
    async def scenario(bus: tidings.AsyncBus) -> None:
        await bus.create_topic("orders")
        producer = bus.producer(linger_ms=10_000)
        futures = [producer.send("orders", b"%d" % i) for i in range(10)]
        await producer.flush()
        assert [(await f).offset for f in futures] == list(range(10))
        batch = producer.send_many("orders", [b"x"] * 5)
        assert [m.offset for m in await batch] == list(range(10, 15))
        lingering = bus.producer(linger_ms=10)
        assert (await asyncio.wait_for(lingering.send("orders", b"late"), 2)).offset == 15
        await lingering.close()
        await producer.close()

    run_async(bus_url, scenario)


def test_async_for_reads_in_order_and_commits_on_close(bus_url: str) -> None:
    async def scenario(bus: tidings.AsyncBus) -> None:
        await bus.create_topic("orders")
        await bus.publish_many("orders", [b"%d" % i for i in range(5)])
        got = []
        async with bus.consumer("orders", group="g", from_beginning=True) as consumer:
            async for record in consumer:
                got.append(record.offset)
                if len(got) == 5:
                    break
        assert got == [0, 1, 2, 3, 4]
        d = await bus.describe_group("g")
        assert [p.committed for p in d.partitions] == [5]

    run_async(bus_url, scenario)


def test_await_poll_and_manual_commit(bus_url: str) -> None:
    async def scenario(bus: tidings.AsyncBus) -> None:
        await bus.create_topic("orders")
        await bus.publish_many("orders", [b"%d" % i for i in range(10)])
        tp = TopicPartition("orders", 0)
        async with bus.consumer(
            "orders", group="g", from_beginning=True, auto_commit=False
        ) as consumer:
            first = await consumer.poll(max_records=4, timeout_ms=1000)
            assert [r.offset for r in first] == [0, 1, 2, 3]
            await consumer.commit()
            assert await consumer.committed(tp) == {tp: 4}
        async with bus.consumer("orders", group="g", auto_commit=False) as consumer:
            rest = await consumer.poll(timeout_ms=1000)
            assert [r.offset for r in rest] == list(range(4, 10))

    run_async(bus_url, scenario)


def test_poll_wakes_when_a_record_arrives(bus_url: str) -> None:
    async def scenario(bus: tidings.AsyncBus) -> None:
        await bus.create_topic("orders")
        # a long heartbeat: the wake-up must come from the append, not from a heartbeat
        async with bus.consumer(
            "orders",
            group="g",
            from_beginning=True,
            heartbeat_interval_ms=5000,
            session_timeout_ms=30_000,
        ) as consumer:
            await consumer.poll(timeout_ms=0)
            waiting = asyncio.create_task(consumer.poll(timeout_ms=5000))
            await asyncio.sleep(0.05)
            published = time.monotonic()
            await bus.publish("orders", b"v")
            records = await asyncio.wait_for(waiting, 2)
            assert [r.value for r in records] == [b"v"]
            # a wake-up by the append, not by the 5 s heartbeat, with room for a loaded machine
            assert time.monotonic() - published < 2.5

    run_async(bus_url, scenario)


def test_a_waiting_poll_takes_max_records_of_a_batch_and_the_rest_comes_next(
    bus_url: str,
) -> None:
    async def scenario(bus: tidings.AsyncBus) -> None:
        await bus.create_topic("orders")
        async with bus.consumer("orders", group="g", from_beginning=True) as consumer:
            await consumer.poll(timeout_ms=0)
            waiting = asyncio.create_task(consumer.poll(max_records=3, timeout_ms=5000))
            await asyncio.sleep(0.05)
            await bus.publish_many("orders", [b"%d" % i for i in range(10)])
            got = [r.offset for r in await asyncio.wait_for(waiting, 5)]
            assert 0 < len(got) <= 3
            while len(got) < 10:
                batch = await consumer.poll(max_records=3, timeout_ms=5000)
                assert 0 < len(batch) <= 3
                got.extend(r.offset for r in batch)
            assert got == list(range(10))

    run_async(bus_url, scenario)


@tansu_offsets_for_times
def test_assign_seek_and_offsets_for_times(bus_url: str) -> None:
    async def scenario(bus: tidings.AsyncBus) -> None:
        await bus.create_topic("orders")
        producer = bus.producer()
        for i in range(5):
            producer.send("orders", b"v", timestamp=(i + 1) * 1000)
        await producer.close()
        tp = TopicPartition("orders", 0)
        consumer = bus.consumer()
        await consumer.assign(tp)
        assert await consumer.offsets_for_times({tp: 2500}) == {tp: 2}
        await consumer.seek(tp, 3)
        assert [r.offset for r in await consumer.poll(timeout_ms=1000)] == [3, 4]
        await consumer.seek_to_time(2000)
        assert consumer.position(tp) == 1
        await consumer.close()
        assert await bus.list_groups() == []

    run_async(bus_url, scenario)


@tansu_group_admin
def test_group_admin(bus_url: str) -> None:
    async def scenario(bus: tidings.AsyncBus) -> None:
        await bus.create_topic("orders")
        await bus.publish_many("orders", [b"v"] * 3)
        async with bus.consumer("orders", group="g", from_beginning=True) as consumer:
            assert len(await consumer.poll(timeout_ms=1000)) == 3
            with pytest.raises(tidings.GroupNotEmptyError):
                await bus.reset_offsets("g", "orders", to="earliest")
        assert await bus.list_groups() == ["g"]
        await bus.reset_offsets("g", "orders", offset=1)
        assert [p.committed for p in (await bus.describe_group("g")).partitions] == [1]
        await bus.delete_group("g")
        assert await bus.list_groups() == []

    run_async(bus_url, scenario)


def test_errors_are_the_same(bus_url: str) -> None:
    async def scenario(bus: tidings.AsyncBus) -> None:
        with pytest.raises(tidings.TopicNotFoundError):
            await bus.publish("missing", b"v")
        with pytest.raises(tidings.InvalidTopicError):
            await bus.create_topic("bad name")
        await bus.create_topic("orders", max_message_bytes=10)
        with pytest.raises(tidings.RecordTooLargeError):
            await bus.publish("orders", b"x" * 11)
        with pytest.raises(tidings.InvalidRecordError):
            await bus.publish("orders", "text")  # type: ignore[arg-type]
        assert (await bus.describe_topic("orders")).records == 0

    run_async(bus_url, scenario)


@pytest.mark.needs(Capability.CLEANUP_ON_DEMAND)
def test_maintain(bus_url: str) -> None:
    async def scenario(bus: tidings.AsyncBus) -> None:
        await bus.create_topic("orders", retention_ms=1000, segment_ms=0)
        await bus.publish("orders", b"old", timestamp=1)
        await bus.publish("orders", b"new")
        await bus.maintain()
        d = await bus.describe_topic("orders")
        assert (d.partitions[0].start_offset, d.partitions[0].end_offset) == (1, 2)

    run_async(bus_url, scenario)


def test_a_consumer_of_a_closed_bus_refuses_work(bus_url: str) -> None:
    async def main() -> None:
        bus = await tidings.connect_async(bus_url)
        await bus.create_topic("orders")
        consumer = bus.consumer("orders", group="g", heartbeat_interval_ms=10)
        await consumer.start()
        await bus.close()
        with pytest.raises(tidings.ClosedError):
            await consumer.poll(timeout_ms=10)

    asyncio.run(main())
