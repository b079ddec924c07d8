"""send() in C takes the common record as _send, the Python implementation, does.

Every case runs through both: the compiled send() (which leaves what it does not take to
_send) and _send alone, as where the module is not built. The producer's conformance tests
run on the compiled one, on every engine.
"""

from __future__ import annotations

import gc
import importlib
import sys
import threading
from collections.abc import Callable, Iterator
from typing import Any

import pytest

import tidings
from tidings import (
    ClosedError,
    InvalidArgumentError,
    InvalidRecordError,
    PartitionNotFoundError,
    RecordTooLargeError,
)
from tidings.api.producer import AsyncProducer, RecordFuture
from tidings.core.partitioner import partition_for_key
from tidings.core.records import now_ms

Send = Callable[..., RecordFuture]


@pytest.fixture
def bus() -> Iterator[tidings.Bus]:
    """A bus in memory with the topics the cases send to."""
    with tidings.connect("memory://") as b:
        b.create_topic("one")
        b.create_topic("three", partitions=3)
        yield b


@pytest.fixture
def producer(bus: tidings.Bus) -> Iterator[AsyncProducer]:
    """A producer that stores only when flushed."""
    with bus.producer(linger_ms=60_000) as p:
        yield p.aio


Way = Callable[[AsyncProducer], Send]


@pytest.fixture(params=["compiled", "python"])
def way(request: pytest.FixtureRequest) -> Way:
    """Each way of sending, in turn: a producer's send as that way takes it."""
    if request.param == "compiled":
        return lambda p: p.send
    return lambda p: p._send


@pytest.fixture
def send(way: Way, producer: AsyncProducer) -> Send:
    """The test's producer's send, the way in turn."""
    return way(producer)


def _stored(bus: tidings.Bus, topic: str) -> list[tuple[int, bytes | None, bytes | None, Any]]:
    """(partition, key, value, headers) of every record of `topic`, by partition."""
    with bus.consumer(topic, group="check", auto_offset_reset="earliest") as consumer:
        records = consumer.poll(max_records=1000, timeout_ms=1000)
    return [(r.partition, r.key, r.value, r.headers) for r in sorted(records, key=_where)]


def _where(r: tidings.Record) -> tuple[int, int]:
    return r.partition, r.offset


def _flush(bus: tidings.Bus, producer: AsyncProducer) -> None:
    bus._portal.call(producer.flush())


def test_records_are_stored_where_their_futures_say(
    bus: tidings.Bus, producer: AsyncProducer, send: Send
) -> None:
    futures = [
        send("one", b"a"),
        send("one", b"b", key=b"k"),
        send("one", b"c", partition=0, headers=None, timestamp=None),
        send("three", b"d", key=b"k2"),
        send("three", b"e", partition=2),
    ]
    _flush(bus, producer)
    metas = [f.result(timeout=5) for f in futures]
    assert [(m.topic, m.partition, m.offset) for m in metas[:3]] == [
        ("one", 0, 0),
        ("one", 0, 1),
        ("one", 0, 2),
    ]
    assert metas[3].partition == partition_for_key(b"k2", 3)
    assert metas[4].partition == 2
    assert _stored(bus, "one") == [(0, None, b"a", ()), (0, b"k", b"b", ()), (0, None, b"c", ())]


def test_a_record_is_stamped_with_the_wall_clock_unless_given_a_timestamp(
    bus: tidings.Bus, producer: AsyncProducer, send: Send
) -> None:
    before = now_ms()
    stamped, given = send("one", b"a"), send("one", b"b", timestamp=7)
    after = now_ms()
    _flush(bus, producer)
    assert before <= stamped.result(timeout=5).timestamp <= after
    assert given.result(timeout=5).timestamp == 7


def test_unkeyed_records_stick_to_one_partition_until_its_batch_is_sealed(
    bus: tidings.Bus, producer: AsyncProducer, send: Send
) -> None:
    futures = [send("three", b"x") for _ in range(20)]
    _flush(bus, producer)
    assert len({f.result(timeout=5).partition for f in futures}) == 1


def test_a_full_batch_is_sealed_and_stored_without_a_flush(bus: tidings.Bus, way: Way) -> None:
    with bus.producer(linger_ms=60_000, batch_size=100) as p:
        futures = [way(p.aio)("one", b"x" * 60) for _ in range(2)]
        assert futures[0].result(timeout=5).offset == 0


def test_a_batch_sealed_before_it_lingered_leaves_no_timer_holding_it(
    bus: tidings.Bus, way: Way
) -> None:
    with bus.producer(linger_ms=60_000, batch_size=100) as p:
        futures = [way(p.aio)("one", b"x" * 60) for _ in range(2)]
        futures[0].result(timeout=5)
        # the loop would otherwise keep the stored batch, its records and their bytes
        # for the rest of the minute (asyncio's own list of timers: no public view)
        batch = futures[0]._batch
        timers = bus._portal.run(lambda: list(bus._portal.loop._scheduled))  # type: ignore[attr-defined]
        assert [t for t in timers if batch in (t._args or ())] == []


def test_arguments_given_by_keyword_or_by_built_names_are_taken(
    bus: tidings.Bus, producer: AsyncProducer, send: Send
) -> None:
    built = "".join(["ke", "y"])  # not interned: compared by value
    send(topic="one", value=b"a")
    send("one", b"b", **{built: b"k"})
    _flush(bus, producer)
    assert _stored(bus, "one") == [(0, None, b"a", ()), (0, b"k", b"b", ())]


def test_values_keys_and_headers_of_other_types_are_taken_as_python_takes_them(
    bus: tidings.Bus, producer: AsyncProducer, send: Send
) -> None:
    send("one", bytearray(b"a"), key=memoryview(b"k"), headers={"h": b"1"})
    send("one", None, key=b"gone")
    _flush(bus, producer)
    assert _stored(bus, "one") == [(0, b"k", b"a", (("h", b"1"),)), (0, b"gone", None, ())]


Call = tuple[tuple[Any, ...], dict[str, Any], type[Exception]]
"""A send's positional arguments, its keywords, the error it must raise."""


@pytest.mark.parametrize(
    "call",
    [
        (("one", "text"), {}, InvalidRecordError),
        (("one", b"v"), {"key": 5}, InvalidRecordError),
        (("one", b"v"), {"partition": 3}, PartitionNotFoundError),
        (("one", b"v"), {"partition": -1}, PartitionNotFoundError),
        (("one", b"v"), {"partition": 1 << 70}, PartitionNotFoundError),
        (("one", b"v"), {"partition": True}, InvalidArgumentError),  # a bool is no partition
        (("one", b"x" * (2 << 20)), {}, RecordTooLargeError),
        (("missing", b"v"), {}, tidings.TopicNotFoundError),
        (("one", b"v"), {"color": "red"}, TypeError),
        (("one", b"v", b"k"), {}, TypeError),
        ((), {"value": b"v"}, TypeError),
    ],
)
def test_bad_input_is_refused_with_the_error_python_raises(
    bus: tidings.Bus, producer: AsyncProducer, send: Send, call: Call
) -> None:
    args, kwargs, error = call
    with pytest.raises(error):
        send(*args, **kwargs)
    send("one", b"after")  # nothing half-taken: the producer goes on
    _flush(bus, producer)
    assert _stored(bus, "one") == [(0, None, b"after", ())]
    assert producer._sender.buffered == 0


def test_a_closed_producer_refuses_records(bus: tidings.Bus, way: Way) -> None:
    p = bus.producer()
    p.close()
    with pytest.raises(ClosedError):
        way(p.aio)("one", b"v")


def test_an_error_while_a_record_joins_its_batch_is_raised_as_it_is(
    bus: tidings.Bus, way: Way
) -> None:
    # the second record joins the first one's batch and fills it: sealing it fails here
    with bus.producer(linger_ms=60_000, batch_size=100) as p:
        send = way(p.aio)
        send("one", b"x" * 60)

        def broken(batch: object) -> None:
            raise ValueError("sealing failed")

        p.aio._sender.seal = broken
        with pytest.raises(ValueError, match="sealing failed"):
            send("one", b"x" * 60)
        p.aio._sender.seal = p.aio._seal
        assert send("one", b"y").result(timeout=5).topic == "one"  # the lock was released


def test_the_compiled_sender_takes_only_futures_it_can_make() -> None:
    compiled = importlib.import_module("tidings.api._sending")  # fails where not built
    with pytest.raises(TypeError, match="subclass of FutureCore"):
        compiled.Sender(
            threading.Lock(),
            spec_of=dict.get,
            partition_for_key=max,
            future_type=object,
            seal=print,
            fallback=print,
            batch_size=1,
            buffer_memory=1,
        )


@pytest.mark.parametrize("sizes", [{"batch_size": 1e5}, {"buffer_memory": 1 << 70}])
def test_sizes_that_are_not_whole_bytes_are_refused(
    bus: tidings.Bus, sizes: dict[str, Any]
) -> None:
    with pytest.raises(tidings.ConfigurationError, match="whole numbers"):
        bus.producer(**sizes)


def test_nothing_of_a_record_is_kept_once_its_bus_is_closed(way: Way) -> None:
    value, key = bytes(range(40)), bytes(range(8))  # objects of their own, not shared
    held = sys.getrefcount(value), sys.getrefcount(key)
    with tidings.connect("memory://") as bus:
        bus.create_topic("three", partitions=3)
        with bus.producer(linger_ms=60_000) as p:
            send = way(p.aio)
            futures = [send("three", value, key=key) for _ in range(500)]
            futures += [send("three", value, partition=1) for _ in range(500)]
            p.flush()
            assert {f.result(timeout=5).topic for f in futures} == {"three"}
        del futures, p, send
    gc.collect()
    assert (sys.getrefcount(value), sys.getrefcount(key)) == held
