"""The Kafka engine's records, made from librdkafka's messages of one poll."""

from __future__ import annotations

import logging

import pytest
from confluent_kafka import KafkaError, Message

from tidings.core.records import Record, TopicPartition
from tidings.engines.base import ConsumerConfig
from tidings.engines.kafka.consumer import KafkaConsumer
from tidings.engines.kafka.engine import KafkaEngine


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


def test_no_messages_make_no_runs() -> None:
    assert _consumer()._records([], {}) == {}
