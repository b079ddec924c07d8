"""Records reach the engine in the order they were sent, one flush's batches at a time.

The engine here is a memory engine whose append() records what it is given, so the cases
can say exactly what went where, through both sends (the compiled one and _send alone,
as where it is not built).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import pytest

import tidings
from tidings.api.producer import AsyncProducer, RecordFuture
from tidings.engines.base import AppendResult, ColumnBatch

Send = Callable[..., RecordFuture]


class _Recorder:
    """Wraps an engine's append(): every batch it is given, in order, then stored."""

    def __init__(self, append: Callable[[Sequence[ColumnBatch]], Any]) -> None:
        self._append = append
        self.given: list[tuple[int, bytes | None]] = []
        """(partition, value) in the order the engine was given them."""
        self.calls: list[list[tuple[int, int]]] = []
        """(partition, records) of each batch, per append() call."""

    async def append(self, batches: Sequence[ColumnBatch]) -> list[AppendResult]:
        self.calls.append([(b.partition, len(b.values)) for b in batches])
        for b in batches:
            self.given.extend((b.partition, v) for v in b.values)
        results: list[AppendResult] = await self._append(batches)
        return results

    def of(self, partition: int) -> list[bytes | None]:
        """The values given for `partition`, in order."""
        return [v for p, v in self.given if p == partition]


@pytest.fixture
def bus() -> Iterator[tidings.Bus]:
    """A bus in memory with a topic of two partitions."""
    with tidings.connect("memory://") as b:
        b.create_topic("two", partitions=2)
        yield b


@pytest.fixture
def recorder(bus: tidings.Bus) -> _Recorder:
    """The bus's engine, its appends recorded."""
    engine: Any = bus.aio.engine
    r = _Recorder(engine.append)
    engine.append = r.append
    return r


@pytest.fixture(params=["compiled", "python"])
def producer(
    request: pytest.FixtureRequest, bus: tidings.Bus, recorder: _Recorder
) -> Iterator[tuple[AsyncProducer, Send]]:
    """A producer that stores only when flushed, and its send (each way in turn)."""
    with bus.producer(linger_ms=60_000) as p:
        send = p.aio.send if request.param == "compiled" else p.aio._send
        yield p.aio, send


def _flush(bus: tidings.Bus, producer: AsyncProducer) -> None:
    bus._portal.call(producer.flush())


def test_a_partitions_records_reach_the_engine_in_the_order_sent(
    bus: tidings.Bus, recorder: _Recorder, producer: tuple[AsyncProducer, Send]
) -> None:
    p, send = producer
    futures = [
        send("two", b"a", partition=0),
        send("two", b"b", partition=1, key=b"k"),
        send("two", b"c", partition=0),
    ]
    _flush(bus, p)
    assert recorder.of(0) == [b"a", b"c"]
    assert recorder.of(1) == [b"b"]
    assert [f.result(timeout=5).offset for f in futures] == [0, 0, 1]


def test_a_send_many_keeps_its_place_among_sends(
    bus: tidings.Bus, recorder: _Recorder, producer: tuple[AsyncProducer, Send]
) -> None:
    p, send = producer
    send("two", b"a1", partition=0)
    many = p.send_many("two", [b"m1", b"m2"], partition=0)
    send("two", b"b", partition=0)
    _flush(bus, p)
    assert [m.offset for m in many.result(timeout=5)] == [1, 2]
    assert recorder.of(0) == [b"a1", b"m1", b"m2", b"b"]


def test_a_send_many_reaches_the_engine_in_one_call(
    bus: tidings.Bus, recorder: _Recorder, producer: tuple[AsyncProducer, Send]
) -> None:
    p, _ = producer
    values = [b"1", b"2", b"3", b"4"]
    stored = p.send_many("two", values, keys=[b"k1", b"k2", b"k3", b"k4"]).result(timeout=5)
    assert len(recorder.calls) == 1  # its batches, over both partitions, as one flush
    for value, meta in zip(values, stored, strict=True):
        assert recorder.of(meta.partition)[meta.offset] == value


def _until(done: Callable[[], bool]) -> None:
    """Wait for the loop's thread to make `done()` true."""
    deadline = time.monotonic() + 5
    while not done():
        assert time.monotonic() < deadline, "not done within 5 s"
        time.sleep(0.001)


def test_batches_sealed_on_two_threads_reach_the_engine_in_the_order_they_were_sealed(
    bus: tidings.Bus, recorder: _Recorder, producer: tuple[AsyncProducer, Send]
) -> None:
    p, send = producer
    loop = p._loop
    go = threading.Event()

    def on_loop() -> None:  # the loop's own work, held until this thread has sealed first
        go.wait(5)
        p._linger_expired(p._sender.open[("two", 0)])

    send("two", b"a", partition=0)
    loop.call_soon_threadsafe(on_loop)
    p._linger_expired(p._sender.open[("two", 0)])  # sealed here first, its store not begun
    send("two", b"b", partition=0)
    go.set()
    _until(lambda: not p._sender.open)
    _flush(bus, p)
    assert recorder.of(0) == [b"a", b"b"]
