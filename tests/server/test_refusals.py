"""What the broker does not serve is refused as Kafka refuses it, and named: one warning
per client id, client address, API and reason in the broker's log."""

from __future__ import annotations

import struct
import time

import crc32c
import pytest
from confluent_kafka import KafkaError, KafkaException, Producer
from kio.schema.errors import ErrorCode

from tidings import Record
from tidings.core import kafka_batch

from . import wire
from .conftest import Served

PRODUCE = 0
LOG_WAIT_S = 15.0
"""How long a test waits for the broker's log line to reach it through the pipe."""


def refusals(broker: Served, api: str) -> list[str]:
    """The broker's log lines that refuse `api`."""
    return [line for line in broker.output if f"refused {api} from" in line]


def wait_for_refusals(broker: Served, api: str, count: int) -> list[str]:
    """The lines refusing `api`, once there are `count` of them (the log comes through a
    pipe, a little after the answer)."""
    deadline = time.monotonic() + LOG_WAIT_S
    while len(refusals(broker, api)) < count and time.monotonic() < deadline:
        time.sleep(0.05)
    return refusals(broker, api)


def init_transactions(broker: Served, client_id: str) -> KafkaError:
    """What a transactional confluent-kafka producer's init_transactions raises."""
    producer = Producer(
        {
            "bootstrap.servers": broker.bootstrap,
            "client.id": client_id,
            "transactional.id": f"{client_id}-tx",
            "log_level": 2,  # its retries warn on every attempt; the test reads the error
        }
    )
    with pytest.raises(KafkaException) as raised:
        producer.init_transactions(3)
    error: KafkaError = raised.value.args[0]
    return error


def test_a_transactional_producer_is_refused_and_the_refusal_logged_once_per_client(
    broker: Served,
) -> None:
    error = init_transactions(broker, "eos-app")
    # librdkafka retries the refusal until the call's timeout, then names it: the code
    # Kafka answers for a feature it does not offer.
    assert error.code() == KafkaError.UNSUPPORTED_VERSION, error
    assert "not supported" in error.str(), error
    [line] = wait_for_refusals(broker, "InitProducerId", 1)  # once, though retried
    assert "WARNING" in line
    assert "'eos-app'" in line and "127.0.0.1" in line
    assert "transactions are not supported by this broker yet" in line

    again = init_transactions(broker, "eos-app")  # the same client, on the same host
    assert again.code() == KafkaError.UNSUPPORTED_VERSION
    init_transactions(broker, "other-app")
    lines = wait_for_refusals(broker, "InitProducerId", 2)
    assert [("'eos-app'" in line, "'other-app'" in line) for line in lines] == [
        (True, False),
        (False, True),
    ], lines


def test_a_transactional_batch_is_refused_nothing_stored_and_logged_once(broker: Served) -> None:
    with broker.bus() as bus:
        bus.create_topic("txn")
    records = [Record("txn", 0, 0, 1_700_000_000_000, None, b"in a transaction")]
    data = bytearray(kafka_batch.encode(records, 0))
    (attributes,) = struct.unpack_from(">h", data, kafka_batch.CRC_START)
    struct.pack_into(">h", data, kafka_batch.CRC_START, attributes | kafka_batch.TRANSACTIONAL)
    crc = crc32c.crc32c(bytes(data[kafka_batch.CRC_START :]))
    struct.pack_into(">I", data, kafka_batch.CRC_START - 4, crc)
    for _ in range(2):
        response = wire.call(
            broker.bootstrap,
            PRODUCE,
            9,
            {
                "acks": -1,
                "timeout": 5000,
                "topic_data": [
                    {"name": "txn", "partition_data": [{"index": 0, "records": bytes(data)}]}
                ],
            },
        )
        [partition] = response.responses[0].partition_responses
        assert partition.error_code == ErrorCode.unsupported_for_message_format
        assert "transactions are not supported" in partition.error_message
    with broker.bus() as bus:
        assert bus.describe_topic("txn").partitions[0].end_offset == 0
    [line] = wait_for_refusals(broker, "Produce", 1)
    assert "'wire-test'" in line and "transactions are not supported by this broker yet" in line
