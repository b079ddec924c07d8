"""A producer hands records to an engine's stream as they are sent, in the order sent.

An engine whose client library batches on its own (Kafka's librdkafka) takes each record
at once through a stream; the producer's batch then only waits for it to finish. Here a
memory engine is given recording streams, so the cases can say exactly what went where,
through both sends (the compiled one and _send alone, as where it is not built).
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Awaitable, Callable, Iterator, Sequence
from functools import partial
from typing import Any

import pytest

import tidings
from tidings.api.producer import AsyncProducer, RecordFuture, _PythonSenderCore
from tidings.core.records import Headers
from tidings.engines.base import AppendResult, ColumnBatch, Engine

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
    ) -> Awaitable[AppendResult]:
        await asyncio.to_thread(self.held.wait)
        self.finished.append((batch.partition, len(batch.values), streamed))
        self.handed.extend((batch.partition, v) for v in batch.values[streamed:])
        return self._stored(batch)

    async def _stored(self, batch: ColumnBatch) -> AppendResult:
        (result,) = await self.append([batch])
        return result

    async def whole(self, batches: Sequence[ColumnBatch]) -> list[AppendResult]:
        await asyncio.to_thread(self.held.wait)
        for b in batches:
            self.handed.extend((b.partition, v) for v in b.values)
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


def test_after_a_refusal_the_batch_keeps_its_records_and_the_next_one_waits_for_it(
    bus: tidings.Bus, streams: _Streams, producer: tuple[AsyncProducer, Send]
) -> None:
    p, send = producer
    streams.refuse = {b"b"}
    for v in (b"a", b"b", b"c"):
        send("two", v, partition=0)
    send("two", b"x", partition=1)
    assert streams.streamed == [b"a", b"x"]  # b refused: the batch keeps b and c
    streams.refuse = set()
    streams.held.clear()
    p._linger_expired(p._open[("two", 0)])  # sealed, its rest not handed over yet
    send("two", b"d", partition=0)
    send("two", b"e", partition=0)
    assert streams.of(0) == [b"a"]  # d and e wait behind b and c
    streams.held.set()
    _flush(bus, p)
    assert streams.finished[0] == (0, 3, 1)
    assert streams.of(0) == [b"a", b"b", b"c", b"d", b"e"]


def test_a_waiting_batch_catches_up_and_streams_once_the_one_before_is_handed_over(
    bus: tidings.Bus, streams: _Streams, producer: tuple[AsyncProducer, Send]
) -> None:
    p, send = producer
    streams.refuse = {b"a"}
    send("two", b"a", partition=0)
    streams.refuse = set()
    p._linger_expired(p._open[("two", 0)])
    send("two", b"b", partition=0, key=b"k", headers={"h": b"1"})
    _until(lambda: streams.of(0) == [b"a", b"b"])  # the first stored: b handed over
    send("two", b"c", partition=0)
    assert streams.streamed == [b"b", b"c"]  # and the open batch streams again
    _flush(bus, p)
    assert streams.of(0) == [b"a", b"b", b"c"]


def test_send_many_goes_after_the_records_sent_before_it_and_before_those_after(
    bus: tidings.Bus, streams: _Streams, producer: tuple[AsyncProducer, Send]
) -> None:
    p, send = producer
    streams.refuse = {b"a2"}
    send("two", b"a1", partition=0)
    send("two", b"a2", partition=0)  # refused: kept by its batch, which send_many seals
    streams.refuse = set()
    streams.held.clear()
    many = p.send_many("two", [b"m1", b"m2"], partition=0)
    send("two", b"b", partition=0)
    send("two", b"c", partition=1)
    assert streams.streamed == [b"a1"]  # the topic's records wait for the call
    streams.held.set()
    many.result(timeout=5)
    _until(lambda: b"c" in streams.streamed)  # caught up once it was stored
    _flush(bus, p)
    assert streams.of(0) == [b"a1", b"a2", b"m1", b"m2", b"b"]
    send("two", b"d", partition=1)
    assert streams.streamed[-1] == b"d"


def _until(done: Callable[[], bool]) -> None:
    """Wait for the loop's thread to make `done()` true."""
    deadline = time.monotonic() + 5
    while not done():
        assert time.monotonic() < deadline, "not done within 5 s"
        time.sleep(0.001)


def test_batches_sealed_on_two_threads_are_handed_over_in_the_order_they_were_sealed(
    bus: tidings.Bus, streams: _Streams, producer: tuple[AsyncProducer, Send]
) -> None:
    p, send = producer
    loop = p._loop
    go = threading.Event()

    def on_loop() -> None:  # the loop's own work, held until this thread has sealed first
        go.wait(5)
        p._linger_expired(p._open[("two", 0)])

    streams.refuse = {b"a"}
    send("two", b"a", partition=0)  # kept by its batch
    streams.refuse = set()
    loop.call_soon_threadsafe(on_loop)
    p._linger_expired(p._open[("two", 0)])  # sealed here first, its store not begun
    send("two", b"b", partition=0)  # kept: the batch before holds its partition
    go.set()
    _until(lambda: not p._open)
    _flush(bus, p)
    assert streams.of(0) == [b"a", b"b"]
