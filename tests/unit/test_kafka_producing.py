"""The Kafka engine's produce path: a batch handed to librdkafka, its reports counted.

Each case runs against both implementations: the compiled `_producing` module and the
Python one that stands in where it was not built. `produce` here is a recorder standing in
for librdkafka's, so the cases can say exactly what it was given.
"""

from __future__ import annotations

import asyncio
import importlib
from array import array
from collections.abc import Callable
from typing import Any

import pytest
from confluent_kafka import KafkaError, Message

from tidings.engines.base import AppendResult, ColumnBatch
from tidings.engines.kafka import producer as kafka_producer
from tidings.engines.kafka.settings import parse

Produced = Callable[..., tuple[int, Exception | None]]


def _compiled() -> Any:
    """The compiled module; importing it fails where it was not built."""
    return importlib.import_module("tidings.engines.kafka._producing")


@pytest.fixture(params=["compiled", "python"])
def produced(request: pytest.FixtureRequest) -> Produced:
    """Each implementation of producing a batch, in turn."""
    if request.param == "compiled":
        made: Produced = _compiled().produced
        return made
    return kafka_producer._produced_in_python


@pytest.fixture(params=["compiled", "python"])
def counter(request: pytest.FixtureRequest) -> type[Any]:
    """Each implementation of the report counter, in turn."""
    return _compiled().Counter if request.param == "compiled" else kafka_producer._PythonCounter


class _Recorder:
    """Records each produce() call; refuses the calls numbered in `refuse`."""

    def __init__(self, refuse: dict[int, BaseException] | None = None) -> None:
        self.calls: list[tuple[Any, ...]] = []
        self.refuse = refuse or {}

    def __call__(self, *args: Any) -> None:
        error = self.refuse.pop(len(self.calls), None)
        if error is not None:
            raise error
        self.calls.append(args)


def _done(err: KafkaError | None, msg: Message) -> None:
    """A stand-in for a batch's report counter."""


def test_every_record_is_produced_in_order_with_its_fields(produced: Produced) -> None:
    batch = ColumnBatch(
        "orders", 2, [b"a", None, b"c"], [None, b"k", None], [10, 11, 12], [(), (("h", b"1"),), ()]
    )
    produce = _Recorder()
    assert produced(produce, batch, [None, [("h", b"1")], None], _done, 0) == (3, None)
    assert produce.calls == [
        ("orders", b"a", None, 2, _done, None, 10, None),
        ("orders", None, b"k", 2, _done, None, 11, [("h", b"1")]),
        ("orders", b"c", None, 2, _done, None, 12, None),
    ]


def test_columns_no_record_has_and_other_sequences_are_taken(produced: Produced) -> None:
    batch = ColumnBatch("orders", 0, (b"a", b"b"), None, array("q", [5, 6]), None)
    produce = _Recorder()
    assert produced(produce, batch, None, _done, 0) == (2, None)
    assert [c[1:3] + c[6:] for c in produce.calls] == [(b"a", None, 5, None), (b"b", None, 6, None)]


def test_a_refused_record_stops_the_batch_where_it_was_and_a_retry_goes_on(
    produced: Produced,
) -> None:
    batch = ColumnBatch("orders", 0, [b"a", b"b", b"c"], None, [1, 2, 3], None)
    full = BufferError("queue full")
    produce = _Recorder({1: full})
    assert produced(produce, batch, None, _done, 0) == (1, full)
    assert produced(produce, batch, None, _done, 1) == (3, None)
    assert [c[1] for c in produce.calls] == [b"a", b"b", b"c"]


def test_an_interrupt_is_not_taken_for_a_refusal(produced: Produced) -> None:
    batch = ColumnBatch("orders", 0, [b"a"], None, [1], None)
    with pytest.raises(KeyboardInterrupt):
        produced(_Recorder({0: KeyboardInterrupt()}), batch, None, _done, 0)


def test_the_compiled_producer_refuses_what_is_not_a_batch() -> None:
    produced = _compiled().produced
    with pytest.raises(TypeError):
        produced(_Recorder(), ("orders", 0), None, _done, 0)
    with pytest.raises(TypeError):
        produced(_Recorder(), ColumnBatch("o", 0, [b"a"], None, [1], None), None, _done, -1)
    short = ColumnBatch("orders", 0, [b"a", b"b"], [b"k"], [1, 2], None)
    with pytest.raises(TypeError, match="shorter"):
        produced(_Recorder(), short, None, _done, 0)


class _Msg:
    """A delivered record's report, as far as the counter reads it."""

    def __init__(self, offset: int) -> None:
        self._offset = offset

    def offset(self) -> int:
        return self._offset


def _counted(counter: type[Any]) -> tuple[Any, list[object]]:
    """A counter of `counter`'s implementation and the messages it completed with."""
    completed: list[object] = []

    class Counted(counter):  # type: ignore[misc]
        __slots__ = ()

        def _complete(self, msg: object) -> None:
            completed.append(msg)

    return Counted(), completed


def test_a_batch_of_known_size_completes_on_its_last_report(counter: type[Any]) -> None:
    c, completed = _counted(counter)
    assert c.expect(3) is None
    failed = KafkaError(KafkaError.MSG_SIZE_TOO_LARGE)
    msgs = [_Msg(100), _Msg(-1), _Msg(102)]
    for err, msg in zip([None, failed, None], msgs, strict=True):
        c.done(err, msg)
    assert completed == [msgs[-1]]
    assert (c.records, c.reported, c.base, c.error) == (3, 3, 100, failed)


def test_offsets_are_kept_where_other_records_came_between(counter: type[Any]) -> None:
    c, _ = _counted(counter)
    for offset in (5, 6, 9, 10, 14):
        c.done(None, _Msg(offset))
    assert (c.base, c.offsets) == (5, [5, 6, 9, 10, 14])
    consecutive, _ = _counted(counter)
    for offset in (5, 6, 7):
        consecutive.done(None, _Msg(offset))
    assert (consecutive.base, consecutive.offsets) == (5, None)


def test_reports_before_the_size_is_known_are_completed_by_expect(counter: type[Any]) -> None:
    c, completed = _counted(counter)
    msgs = [_Msg(7), _Msg(8)]
    for msg in msgs:
        c.done(None, msg)
    assert c.expect(2) is msgs[-1]
    assert completed == []  # the caller completes it: exactly one of the two does
    assert (c.base, c.error) == (7, None)


def test_reports_on_both_sides_of_expect_complete_once(counter: type[Any]) -> None:
    c, completed = _counted(counter)
    c.done(None, _Msg(0))
    assert c.expect(3) is None
    last = _Msg(2)
    c.done(None, _Msg(1))
    c.done(None, last)
    assert completed == [last]


def test_a_batch_has_at_least_one_record(counter: type[Any]) -> None:
    c, _ = _counted(counter)
    with pytest.raises(ValueError, match="at least 1"):
        c.expect(0)


class _Delivered:
    """A librdkafka producer stand-in whose reports come inside produce() itself: every
    record is acknowledged before the batch's size is known."""

    def __init__(self) -> None:
        self.offset = 0

    def produce(self, *args: Any) -> None:
        self.offset += 1
        args[4](None, _Msg(self.offset - 1))


def test_a_batch_whose_reports_all_came_first_still_completes() -> None:
    async def main() -> list[AppendResult]:
        appender = kafka_producer.Appender(
            parse("kafka://127.0.0.1:9"), lambda _: None, lambda _: None, asyncio.get_running_loop()
        )
        try:
            appender._producer = _Delivered()  # type: ignore[assignment]
            batches = [
                ColumnBatch("t", 0, [b"a", b"b"], None, [1, 2], None),
                ColumnBatch("t", 0, [b"c"], None, [3], None),
            ]
            return await asyncio.wait_for(appender.append(batches), 5)
        finally:
            appender._closed = True

    assert asyncio.run(main()) == [AppendResult("t", 0, 0), AppendResult("t", 0, 2)]
