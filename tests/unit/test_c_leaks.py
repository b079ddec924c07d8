"""No C module leaks: every entry point, called many times with good input and bad, leaves
no references on what it was given, no objects and no memory behind.

Three counts are read after a warm-up and again after the calls: the references held on
each object passed in, the objects the cyclic collector tracks, and the memory blocks
Python's allocator hands out (sys.getallocatedblocks, which sees objects C makes but
tracemalloc does not: every record, tuple, int and small bytes), with the process's
resident memory as a coarse bound for larger allocations. A leak of one small object a
call grows the blocks by the number of calls; the bounds allow a twentieth of that.
"""

from __future__ import annotations

import gc
import importlib
import os
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from confluent_kafka import Message

import tidings
from tidings.core import kafka_batch
from tidings.core.kafka_batch import HEADER
from tidings.core.records import NO_HEADERS, Record
from tidings.engines.base import ColumnBatch

CALLS = 20_000
"""Calls of each entry point measured, after a tenth as many to warm up."""
RSS_SLACK = 16 << 20
"""Resident memory the calls may add (allocator arenas, caches): a leak of a kilobyte a
call passes it."""


def _compiled(name: str) -> Any:
    """A compiled module; importing it fails where it was not built."""
    return importlib.import_module(name)


def _rss() -> int:
    """The process's resident memory in bytes."""
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def _refused(call: Callable[[], object], error: type[BaseException]) -> Callable[[], None]:
    """`call`, which must raise `error` each time."""

    def attempt() -> None:
        try:
            call()
        except error:
            return
        raise AssertionError(f"{call} did not raise {error.__name__}")

    return attempt


def _assert_no_growth(
    calls: list[Callable[[], object]], *given: object, settle: Callable[[], object] = gc.collect
) -> None:
    """Call each of `calls` CALLS times; nothing of `given` or of the process grows.

    `settle` brings the process to rest before each count (the collector runs after it).
    """
    for _ in range(CALLS // 10):
        for call in calls:
            call()
    settle()
    gc.collect()
    refs = [sys.getrefcount(o) for o in given]
    objects = len(gc.get_objects())
    blocks = sys.getallocatedblocks()
    rss = _rss()
    for _ in range(CALLS):
        for call in calls:
            call()
    settle()
    gc.collect()
    assert [sys.getrefcount(o) for o in given] == refs, "references were left on the input"
    assert len(gc.get_objects()) - objects < 100, "objects were left for the collector"
    assert sys.getallocatedblocks() - blocks < CALLS // 20, "objects were left behind"
    assert _rss() - rss < RSS_SLACK, "memory was left behind"


def test_the_check_of_kafka_records_leaks_nothing() -> None:
    check = _compiled("tidings.core._kafka_check").records_problem
    records = [Record("t", 0, i, 1000 + i, b"k", b"v" * 600, (("h", b"1"),)) for i in range(5)]
    batch = kafka_batch.encode(records, 0)
    good = batch[HEADER.size :]
    cut = good[: len(good) // 2]
    view = memoryview(good)
    assert check(good, 5) is None
    assert check(cut, 5) is not None
    _assert_no_growth(
        [
            lambda: check(good, 5),
            lambda: check(view, 5),
            lambda: check(cut, 5),  # a problem: a new str each time
            lambda: check(good, 9),
            _refused(lambda: check(good), TypeError),
            _refused(lambda: check("not bytes", 1), TypeError),
            _refused(lambda: check(good, "5"), TypeError),
        ],
        good,
        cut,
        view,
    )


def test_the_records_of_stored_batches_leak_nothing() -> None:
    made = _compiled("tidings.core._records").records
    plain = [("t", 0, i, 1000 + i, b"k%d" % i, b"v" * 100, (("h", b"1"),)) for i in range(50)]
    held: list[object] = []
    other = [("t", 0, 0, 0, None, held, ())]  # a value a cycle could pass through

    def failing() -> Iterator[tuple[Any, ...]]:
        yield plain[0]
        raise ValueError("the rows failed")

    _assert_no_growth(
        [
            lambda: made(Record, plain),
            lambda: made(Record, iter(plain)),
            lambda: made(Record, other),
            _refused(lambda: made(Record, [plain[0], ["not", "a", "tuple"]]), TypeError),
            _refused(lambda: made(Record, failing()), ValueError),
            _refused(lambda: made(dict, plain), TypeError),
            _refused(lambda: made(Record, 5), TypeError),
        ],
        Record,
        plain[0],
        plain[0][4],
        held,
    )


def _message(offset: int, **fields: Any) -> Message:
    return Message(
        topic="orders", partition=offset % 2, offset=offset, timestamp=(1, offset), **fields
    )


def test_the_records_of_the_kafka_engine_leak_nothing() -> None:
    made = _compiled("tidings.engines.kafka._records").made
    messages = [_message(i, key=b"k", value=b"v" * 100) for i in range(50)]
    with_headers = [_message(i, value=b"v", headers=[("h", b"1"), ("n", None)]) for i in range(5)]
    not_messages: list[Any] = [messages[0], "not a message"]
    _assert_no_growth(
        [
            lambda: made(messages, Message, Record, NO_HEADERS),
            lambda: made(with_headers, Message, Record, NO_HEADERS),
            lambda: made([], Message, Record, NO_HEADERS),
            _refused(lambda: made(not_messages, Message, Record, NO_HEADERS), TypeError),
            _refused(lambda: made(tuple(messages), Message, Record, NO_HEADERS), TypeError),
            _refused(lambda: made(messages, Message, dict, NO_HEADERS), TypeError),
        ],
        messages[0],
        Message,
        Record,
        NO_HEADERS,
    )


class _Recorder:
    """A librdkafka produce() stand-in that refuses every `every`th call."""

    def __init__(self, every: int = 0) -> None:
        self.calls = 0
        self.every = every

    def __call__(self, *args: Any) -> None:
        self.calls += 1
        if self.every and self.calls % self.every == 0:
            raise BufferError("queue full")


class _Report:
    def __init__(self, offset: int) -> None:
        self._offset = offset

    def offset(self) -> int:
        return self._offset


def test_the_kafka_produce_path_leaks_nothing() -> None:
    producing = _compiled("tidings.engines.kafka._producing")

    counter: type[Any] = producing.Counter

    class Counted(counter):  # type: ignore[misc]
        __slots__ = ()

        def _complete(self, msg: object) -> None:
            pass

    values = [b"v" * 100, None, b"w"]
    batch = ColumnBatch("orders", 2, values, [None, b"k", None], [10, 11, 12], None)
    headers = [None, [("h", b"1")], None]
    short = ColumnBatch("orders", 0, [b"a", b"b"], [b"k"], [1, 2], None)
    produce, refusing = _Recorder(), _Recorder(every=2)
    reports = [_Report(o) for o in (5, 6, 9, 10)]

    def count_reports() -> None:
        counter = Counted()
        for report in reports:
            counter.done(None, report)
        counter.expect(len(reports))  # offsets kept: the reports are not consecutive

    _assert_no_growth(
        [
            lambda: producing.produced(produce, batch, headers, _Report, 0),
            lambda: producing.produced(refusing, batch, None, _Report, 1),  # a refusal
            count_reports,
            _refused(lambda: producing.produced(produce, short, None, _Report, 0), TypeError),
            _refused(lambda: producing.produced(produce, ("o", 0), None, _Report, 0), TypeError),
            _refused(lambda: Counted().expect(0), ValueError),
        ],
        batch,
        values[0],
        produce,
        reports[0],
    )


@pytest.fixture
def bus(tmp_path: Path) -> Iterator[tidings.Bus]:
    """A bus on disk, so the records sent do not stay in the process."""
    with tidings.connect(f"sqlite://{tmp_path}/bus?fsync=off") as b:
        b.create_topic("orders", partitions=3)
        yield b


def test_send_leaks_nothing(bus: tidings.Bus) -> None:
    value, key = b"v" * 100, b"customer-7"
    headers = {"source": b"web"}
    # a short linger: a batch is let go once its linger timer has fired
    with bus.producer(linger_ms=1) as producer:
        # send() is the compiled SenderCore.send (test_compiled.py checks it), but with
        # TIDINGS_NO_EXTENSIONS, where it is Python's
        loose: Any = producer  # called with what its types refuse
        sent = 0

        def send() -> None:
            nonlocal sent
            producer.send("orders", value, key=key, headers=headers)
            sent += 1
            if sent % 100 == 0:
                # stored on disk: the batches and futures are let go, but for the few
                # recent batches the engine keeps for readers (filled by the warm-up)
                producer.flush()

        def settle() -> None:
            producer.flush()
            time.sleep(0.05)  # the linger timers of the batches just stored fire

        _assert_no_growth(
            [
                send,
                lambda: producer.send("orders", value, partition=1, timestamp=5),
                _refused(lambda: loose.send("orders", "not bytes"), TypeError),
                _refused(lambda: producer.send("orders", value, partition=7), tidings.TidingsError),
                _refused(lambda: loose.send("orders", value, color="red"), TypeError),
            ],
            value,
            key,
            headers,
            settle=settle,
        )
