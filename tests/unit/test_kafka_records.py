"""The Kafka engine's records, made from librdkafka's messages of one poll."""

from __future__ import annotations

import gc
import importlib
import logging
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from confluent_kafka import KafkaError, Message

from tidings.core import records as records_module
from tidings.core.records import NO_HEADERS, Headers, Record, TopicPartition
from tidings.engines.base import ConsumerConfig
from tidings.engines.kafka import consumer as kafka_consumer
from tidings.engines.kafka.consumer import KafkaConsumer
from tidings.engines.kafka.engine import KafkaEngine

Made = Callable[
    [list[Message], type[Message], type[Record], Headers], tuple[list[Record], list[int]]
]


def _compiled() -> Made:
    """The compiled maker; importing it fails where it was not built."""
    made: Made = importlib.import_module("tidings.engines.kafka._records").made
    return made


@pytest.fixture(params=["compiled", "python"])
def made(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> Iterator[Made]:
    """Each way of making records, in turn, as the consumer's."""
    chosen = _compiled() if request.param == "compiled" else kafka_consumer._made_in_python
    monkeypatch.setattr(kafka_consumer, "_made", chosen)
    yield chosen


def _consumer() -> KafkaConsumer:
    # neither the engine nor the consumer connects before it is used
    return KafkaConsumer(KafkaEngine("kafka://127.0.0.1:9"), ConsumerConfig(group="g"))


def _message(
    topic: str,
    partition: int,
    offset: int,
    value: bytes | None,
    *,
    key: bytes | None = None,
    headers: list[tuple[str, str | bytes | None]] | None = None,
) -> Message:
    return Message(
        topic=topic,
        partition=partition,
        offset=offset,
        timestamp=(1, 1000 + offset),
        key=key,
        value=value,
        headers=headers,
    )


@pytest.mark.usefixtures("made")
def test_records_of_one_partition_keep_every_field_in_order() -> None:
    messages = [
        _message("orders", 2, 7, key=b"k", value=b"a"),
        _message("orders", 2, 8, value=None, headers=[("h", b"1"), ("n", None)]),
        _message("orders", 2, 9, key=b"", value=b""),
    ]
    runs = _consumer()._records(messages, {})
    assert runs == {
        TopicPartition("orders", 2): [
            Record("orders", 2, 7, 1007, b"k", b"a"),
            Record("orders", 2, 8, 1008, None, None, (("h", b"1"), ("n", None))),
            Record("orders", 2, 9, 1009, b"", b""),
        ]
    }
    assert all(type(r) is Record for r in runs[TopicPartition("orders", 2)])


@pytest.mark.usefixtures("made")
def test_records_of_interleaved_partitions_join_their_runs_in_order() -> None:
    messages = [
        _message("orders", 0, 1, value=b"a"),
        _message("orders", 0, 2, value=b"b"),
        _message("orders", 1, 5, value=b"c"),
        _message("refunds", 0, 1, value=b"d"),
        _message("orders", 0, 3, value=b"e"),
    ]
    held = {TopicPartition("orders", 0): [Record("orders", 0, 0, 1000, None, b"z")]}
    runs = _consumer()._records(messages, held)
    assert {tp: [r.value for r in run] for tp, run in runs.items()} == {
        TopicPartition("orders", 0): [b"z", b"a", b"b", b"e"],
        TopicPartition("orders", 1): [b"c"],
        TopicPartition("refunds", 0): [b"d"],
    }


@pytest.mark.usefixtures("made")
def test_a_transient_error_event_is_logged_and_the_records_around_it_kept(
    caplog: pytest.LogCaptureFixture,
) -> None:
    messages = [
        _message("orders", 0, 1, value=b"a"),
        Message(error=KafkaError(KafkaError._TRANSPORT)),
        _message("orders", 0, 2, value=b"b"),
    ]
    with caplog.at_level(logging.WARNING, logger="tidings.kafka"):
        runs = _consumer()._records(messages, {})
    assert [r.value for r in runs[TopicPartition("orders", 0)]] == [b"a", b"b"]
    assert "consumer of kafka://127.0.0.1:9" in caplog.text


@pytest.mark.usefixtures("made")
def test_no_messages_make_no_runs() -> None:
    assert _consumer()._records([], {}) == {}


def test_both_makers_make_the_same_records_and_runs() -> None:
    messages = [
        _message("orders", 0, 1, b"a", key=b"k"),
        _message("orders", 0, 2, None, headers=[]),
        _message("orders", 1, 5, b"c", headers=[("h", b"1"), ("n", None)]),
        _message("refunds", 1, 1, b"d"),
        _message("orders", 0, 3, b""),
    ]
    made = _compiled()(messages, Message, Record, NO_HEADERS)
    assert made == kafka_consumer._made_in_python(messages, Message, Record, NO_HEADERS)
    records, starts = made
    assert starts == [0, 2, 3, 4]
    assert [r.headers for r in records] == [(), (), (("h", b"1"), ("n", None)), (), ()]
    assert all(type(r) is Record for r in records)
    assert _compiled()([], Message, Record, NO_HEADERS) == ([], [])
    assert kafka_consumer._made_in_python([], Message, Record, NO_HEADERS) == ([], [])


def test_records_hold_only_plain_values_so_the_compiled_ones_skip_the_collector(
    made: Made,
) -> None:
    records, starts = made(
        [_message("orders", 0, 1, b"a", headers=[("h", b"1")])], Message, Record, NO_HEADERS
    )
    assert starts == [0]
    assert records[0] == Record("orders", 0, 1, 1001, None, b"a", (("h", b"1"),))
    # Python's maker leaves them to the compiled records_from where that one is built
    in_python = made is kafka_consumer._made_in_python and records_module._compiled is None
    assert gc.is_tracked(records[0]) is in_python


def test_a_compiled_record_holding_other_values_stays_with_the_collector() -> None:
    # librdkafka gives bytes; a message made in Python may hold anything, even a cycle
    held: list[object] = []
    value: Any = held
    (record,), _ = _compiled()([_message("orders", 0, 1, value)], Message, Record, NO_HEADERS)
    held.append(record)
    assert gc.is_tracked(record)


def test_compiled_records_hash_and_compare_as_records_made_in_python() -> None:
    (record,), _ = _compiled()([_message("orders", 0, 1, b"a")], Message, Record, NO_HEADERS)
    same = Record("orders", 0, 1, 1001, None, b"a")
    assert record == same
    assert hash(record) == hash(same) == hash(tuple(same))
    assert {same: "found"}[record] == "found"


def test_the_compiled_maker_reads_fields_by_the_given_type_only() -> None:
    class Odd(Message):
        def topic(self) -> str:
            messages.clear()  # would cut the list short under a loop over it
            return "other"

    messages = [Odd(topic="orders", partition=0, offset=i, value=b"v") for i in range(3)]
    records, _ = _compiled()(list(messages), Message, Record, NO_HEADERS)
    assert [(r.topic, r.offset) for r in records] == [("orders", 0), ("orders", 1), ("orders", 2)]


def test_the_compiled_maker_refuses_what_is_not_a_list_of_messages() -> None:
    compiled: Any = _compiled()  # called with what its types refuse
    with pytest.raises(TypeError, match="made"):
        compiled((), Message, Record, NO_HEADERS)
    with pytest.raises(TypeError, match="a tuple subclass"):
        compiled([], Message, dict, NO_HEADERS)
    with pytest.raises(TypeError):
        compiled([_message("orders", 0, 1, b"a"), "not a message"], Message, Record, NO_HEADERS)
