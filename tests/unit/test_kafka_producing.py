"""The Kafka engine's produce path: a batch handed to librdkafka, its reports counted.

Each case runs against both implementations: the compiled `_producing` module and the
Python one that stands in where it was not built. `produce` here is a recorder standing in
for librdkafka's, so the cases can say exactly what it was given.
"""

from __future__ import annotations

import importlib
from array import array
from collections.abc import Callable
from typing import Any

import pytest
from confluent_kafka import KafkaError, Message

from tidings.engines.base import ColumnBatch
from tidings.engines.kafka import producer as kafka_producer

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


def test_reports_are_counted_and_only_the_first_last_and_failed_are_looked_at(
    counter: type[Any],
) -> None:
    noted: list[tuple[object, object]] = []

    class Counted(counter):  # type: ignore[misc]
        def _note(self, err: object, msg: object) -> None:
            noted.append((err, msg))
            if err is None and self.base < 0:
                self.base: int = 100

    c = Counted()
    c.left, c.base = 4, -1
    failed = KafkaError(KafkaError.MSG_SIZE_TOO_LARGE)
    for err, msg in [(None, "first"), (None, "second"), (failed, "third"), (None, "last")]:
        c.done(err, msg)
    assert noted == [(None, "first"), (failed, "third"), (None, "last")]
    assert (c.left, c.base) == (0, 100)
