"""SASL (PLAIN, SCRAM-SHA-256) and TLS on the Kafka listener, with a real client."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import trustme
from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaError, Producer, TopicPartition

from .conftest import Served

USERS = 'alice = "wonderland"\nbob = "builder"\n'


def users_file(tmp_path: Path) -> str:
    """A users file for --sasl-users."""
    path = tmp_path / "users.toml"
    path.write_text(USERS)
    return str(path)


def round_trip(broker: Served, topic: str, **security: Any) -> list[bytes | None]:
    """Produce three records and read them back with the given security settings."""
    base = {"bootstrap.servers": broker.bootstrap, **security}
    producer = Producer({**base, "acks": "all"})
    for i in range(3):
        producer.produce(topic, b"secret %d" % i)
    assert producer.flush(20) == 0, "records left undelivered"
    consumer = Consumer({**base, "group.id": "readers", "enable.auto.commit": False})
    consumer.assign([TopicPartition(topic, 0, OFFSET_BEGINNING)])
    values: list[bytes | None] = []
    deadline = time.monotonic() + 20
    while len(values) < 3:
        assert time.monotonic() < deadline, f"read {values}"
        m = consumer.poll(0.5)
        if m is not None and not m.error():
            values.append(m.value())
    consumer.close()
    return values


@pytest.mark.parametrize("mechanism", ["PLAIN", "SCRAM-SHA-256"])
def test_sasl_users_produce_and_consume(
    start: Callable[..., Served], tmp_path: Path, mechanism: str
) -> None:
    broker = start("--sasl-users", users_file(tmp_path))
    assert "security.protocol=SASL_PLAINTEXT (PLAIN, SCRAM-SHA-256)" in broker.log()
    security = {
        "security.protocol": "SASL_PLAINTEXT",
        "sasl.mechanism": mechanism,
        "sasl.username": "alice",
        "sasl.password": "wonderland",
    }
    assert round_trip(broker, "private", **security) == [b"secret 0", b"secret 1", b"secret 2"]


@pytest.mark.parametrize("mechanism", ["PLAIN", "SCRAM-SHA-256"])
def test_a_wrong_password_is_refused_and_nothing_is_stored(
    start: Callable[..., Served], tmp_path: Path, mechanism: str
) -> None:
    broker = start("--sasl-users", users_file(tmp_path))
    errors: list[Any] = []
    producer = Producer(
        {
            "bootstrap.servers": broker.bootstrap,
            "security.protocol": "SASL_PLAINTEXT",
            "sasl.mechanism": mechanism,
            "sasl.username": "bob",
            "sasl.password": "not the password",
            "message.timeout.ms": 3000,
            "error_cb": errors.append,
        }
    )
    producer.produce("private", b"forged")
    producer.flush(10)
    assert any(e.code() == KafkaError._AUTHENTICATION for e in errors), errors
    assert "SASL authentication failed" in broker.log()
    with broker.bus() as bus:
        assert "private" not in {t.name for t in bus.list_topics()}
    security = {  # while bob's client goes on guessing (and is held back)
        "security.protocol": "SASL_PLAINTEXT",
        "sasl.mechanism": mechanism,
        "sasl.username": "alice",
        "sasl.password": "wonderland",
    }
    assert len(round_trip(broker, "private", **security)) == 3  # others are still served


def test_a_client_without_sasl_is_closed_before_any_request(
    start: Callable[..., Served], tmp_path: Path
) -> None:
    broker = start("--sasl-users", users_file(tmp_path))
    producer = Producer({"bootstrap.servers": broker.bootstrap, "message.timeout.ms": 2000})
    outcomes: list[Any] = []
    producer.produce("private", b"anonymous", on_delivery=lambda err, _: outcomes.append(err))
    producer.flush(10)
    assert len(outcomes) == 1 and outcomes[0] is not None  # never delivered
    assert "before SASL authentication" in broker.log()


def tls_files(tmp_path: Path) -> tuple[str, str, str]:
    """A CA, and a certificate for 127.0.0.1 it signed: (ca, cert, key) PEM paths."""
    ca = trustme.CA()
    server = ca.issue_cert("127.0.0.1", "localhost")
    paths = (tmp_path / "ca.pem", tmp_path / "cert.pem", tmp_path / "key.pem")
    ca.cert_pem.write_to_path(str(paths[0]))
    server.cert_chain_pems[0].write_to_path(str(paths[1]))
    server.private_key_pem.write_to_path(str(paths[2]))
    return str(paths[0]), str(paths[1]), str(paths[2])


def test_tls_alone_and_tls_with_scram(start: Callable[..., Served], tmp_path: Path) -> None:
    ca, cert, key = tls_files(tmp_path)
    tls = start("--tls-cert", cert, "--tls-key", key, name="tls")
    assert "security.protocol=SSL" in tls.log()
    values = round_trip(tls, "sealed", **{"security.protocol": "SSL", "ssl.ca.location": ca})
    assert len(values) == 3

    both = start(
        "--tls-cert", cert, "--tls-key", key, "--sasl-users", users_file(tmp_path), name="both"
    )
    security = {
        "security.protocol": "SASL_SSL",
        "ssl.ca.location": ca,
        "sasl.mechanism": "SCRAM-SHA-256",
        "sasl.username": "alice",
        "sasl.password": "wonderland",
    }
    assert len(round_trip(both, "sealed", **security)) == 3
