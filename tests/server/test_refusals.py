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
from .test_bad_input import still_serving

FETCH, METADATA, PRODUCE, END_TXN, CONSUMER_GROUP_HEARTBEAT = 1, 3, 0, 26, 68
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


def test_an_api_not_served_is_answered_unsupported_version_and_the_connection_stays_open(
    broker: Served,
) -> None:
    for _ in range(2):  # a second time on a second connection: not logged again
        with wire.connect(broker.bootstrap) as sock:
            sock.sendall(
                wire.request_frame(
                    CONSUMER_GROUP_HEARTBEAT,
                    0,
                    {"group_id": "g", "member_epoch": 0, "rebalance_timeout": 30_000},
                    client_id="kip848-app",
                )
            )
            frame = wire.read_frame(sock)
            assert frame is not None, "the broker closed the connection"
            answer = wire.parse_response(frame, CONSUMER_GROUP_HEARTBEAT, 0)
            assert answer.error_code == ErrorCode.unsupported_version
            assert "KIP-848" in answer.error_message
            assert "group.protocol=classic" in answer.error_message
            sock.sendall(wire.request_frame(METADATA, 12, {"topics": None}, correlation_id=2))
            assert wire.read_frame(sock) is not None, "the connection was closed after it"
    [line] = wait_for_refusals(broker, "ConsumerGroupHeartbeat", 1)
    assert "'kip848-app'" in line and "127.0.0.1" in line
    assert "answered UNSUPPORTED_VERSION" in line
    still_serving(broker)


def test_a_version_not_served_and_a_transaction_api_are_answered_unsupported_version(
    broker: Served,
) -> None:
    fetch_v13 = wire.call(
        broker.bootstrap, FETCH, 13, {"max_wait": 0, "topics": []}, client_id="new-client"
    )
    assert fetch_v13.error_code == ErrorCode.unsupported_version
    end_txn = wire.call(broker.bootstrap, END_TXN, 3, {"transactional_id": "t", "committed": True})
    assert end_txn.error_code == ErrorCode.unsupported_version
    [fetch] = wait_for_refusals(broker, "Fetch", 1)
    assert "'new-client'" in fetch and "Fetch v13 is not served: this broker serves v4-v12" in fetch
    [txn] = wait_for_refusals(broker, "EndTxn", 1)
    assert "transactions are not supported by this broker yet" in txn
    still_serving(broker)


def test_an_api_kafka_does_not_define_closes_the_connection_and_is_logged_once(
    broker: Served,
) -> None:
    client_id = b"probe"
    header = struct.pack(">hhih", 999, 0, 1, len(client_id)) + client_id
    for _ in range(3):
        with wire.connect(broker.bootstrap) as sock:
            sock.sendall(struct.pack(">i", len(header)) + header)
            assert wire.read_frame(sock) is None, "answered an API Kafka does not define"
    [line] = wait_for_refusals(broker, "API key 999", 1)
    assert "'probe'" in line and "the connection is closed" in line
    assert "closing the connection" not in broker.log()  # named once, not per connection
    still_serving(broker)


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
