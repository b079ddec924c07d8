"""A producer hands records to an engine's stream as they are sent, in the order sent.

An engine whose client library batches on its own (Kafka's librdkafka) takes each record
at once through a stream; the producer's batch then only waits for it to finish. Here a
memory engine is given recording streams, so the cases can say exactly what went where,
through both sends (the compiled one and _send alone, as where it is not built).
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable, Iterator, Sequence
from functools import partial
from typing import Any

import pytest

import tidings
from tidings.api.producer import AsyncProducer, RecordFuture, _PythonSenderCore
from tidings.core.records import Headers
from tidings.engines.base import AppendResult, ColumnBatch, Engine, ProduceBatch

Send = Callable[..., RecordFuture]


class _Streams:
    """Streams for a memory engine, recording the order records are handed over in, as a
    client library would see it: through a stream, or as (the rest of) a batch."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self.append = engine.append
        self.handed: list[tuple[int, bytes | None]] = []
        """(partition, value) in the order the engine was given them."""
        self.streamed: list[bytes | None] = []
        self.finished: list[tuple[int, int, int]] = []
        """(partition, records, streamed) of each batch finished."""
        self.opened: list[int] = []
        self.refuse: set[bytes | None] = set()
        self.held = threading.Event()
        """Set: batches are stored as they come; clear: they wait for it."""
        self.held.set()

    def stream(self, topic: str, partition: int) -> Callable[..., None]:
        self.opened.append(partition)

        def take(value: bytes | None, key: bytes | None, ts: int, headers: Headers | None) -> None:
            if value in self.refuse:
                raise BufferError("full")
            self.streamed.append(value)
            self.handed.append((partition, value))

        return take

    async def finish_stream(
        self, stream: object, batch: ColumnBatch, streamed: int
    ) -> AppendResult:
        await asyncio.to_thread(self.held.wait)
        self.finished.append((batch.partition, len(batch.values), streamed))
        self.handed.extend((batch.partition, v) for v in batch.values[streamed:])
        (result,) = await self.append([batch.encode()])
        return result

    async def whole(self, batches: Sequence[ProduceBatch]) -> list[AppendResult]:
        await asyncio.to_thread(self.held.wait)
        for b in batches:
            self.handed.extend((b.partition, v) for v in ColumnBatch.decode(b).values)
        return await self.append(batches)

    def of(self, partition: int) -> list[bytes | None]:
        """The values handed over to `partition`, in order."""
        return [v for p, v in self.handed if p == partition]


@pytest.fixture
def bus() -> Iterator[tidings.Bus]:
    """A bus in memory with a topic of two partitions."""
    with tidings.connect("memory://") as b:
        b.create_topic("two", partitions=2)
        yield b


@pytest.fixture
def streams(bus: tidings.Bus) -> _Streams:
    """The bus's engine, made to give recording streams."""
    engine: Any = bus.aio.engine
    s = _Streams(engine)
    engine.streams = True
    engine.stream = s.stream
    engine.finish_stream = s.finish_stream
    engine.append = s.whole
    return s


@pytest.fixture(params=["compiled", "python"])
def producer(
    request: pytest.FixtureRequest, bus: tidings.Bus, streams: _Streams
) -> Iterator[tuple[AsyncProducer, Send]]:
    """A producer that stores only when flushed, and its send (each way in turn)."""
    with bus.producer(linger_ms=60_000) as p:
        send = p.aio.send if request.param == "compiled" else partial(_PythonSenderCore.send, p.aio)
        yield p.aio, send


def _flush(bus: tidings.Bus, producer: AsyncProducer) -> None:
    bus._portal.call(producer.flush())


def test_records_are_handed_over_as_they_are_sent(
    bus: tidings.Bus, streams: _Streams, producer: tuple[AsyncProducer, Send]
) -> None:
    p, send = producer
    futures = [
        send("two", b"a", partition=0),
        send("two", b"b", partition=1, key=b"k"),
        send("two", b"c", partition=0, headers={"h": b"1"}),
    ]
    assert streams.handed == [(0, b"a"), (1, b"b"), (0, b"c")]
    _flush(bus, p)
    assert sorted(streams.finished) == [(0, 2, 2), (1, 1, 1)]
    assert [f.result(timeout=0).offset for f in futures] == [0, 0, 1]


def test_after_a_refusal_the_rest_of_the_batch_and_its_partition_wait_for_it(
    bus: tidings.Bus, streams: _Streams, producer: tuple[AsyncProducer, Send]
) -> None:
    p, send = producer
    streams.refuse = {b"b"}
    for v in (b"a", b"b", b"c"):
        send("two", v, partition=0)
    send("two", b"x", partition=1)
    assert streams.streamed == [b"a", b"x"]
    streams.held.clear()
    p._linger_expired(p._open[("two", 0)])  # sealed, not yet stored: a new batch waits
    send("two", b"d", partition=0)
    assert streams.opened == [0, 1]
    streams.held.set()
    _flush(bus, p)
    assert streams.finished[0] == (0, 3, 1)
    assert streams.of(0) == [b"a", b"b", b"c", b"d"]
    send("two", b"e", partition=0)  # nothing waits any more: streamed again
    assert streams.streamed[-1] == b"e"


def test_send_many_stops_the_topics_streams_until_its_records_are_stored(
    bus: tidings.Bus, streams: _Streams, producer: tuple[AsyncProducer, Send]
) -> None:
    p, send = producer
    send("two", b"a", partition=0)
    streams.held.clear()
    many = p.send_many("two", [b"m1", b"m2"], partition=0)
    send("two", b"b", partition=0)
    assert streams.streamed == [b"a"]
    streams.held.set()
    many.result(timeout=5)
    _flush(bus, p)
    assert streams.of(0) == [b"a", b"m1", b"m2", b"b"]
    send("two", b"c", partition=1)
    assert streams.streamed[-1] == b"c"
