"""The address Metadata gives Kafka clients: one they can reach, never 0.0.0.0."""

from __future__ import annotations

import socket
from collections.abc import Callable
from pathlib import Path

from confluent_kafka import KafkaError, Producer

from . import wire
from .conftest import Served
from .test_serve_command import serve_fails

METADATA = 3


def brokers_in_metadata(broker: Served) -> list[tuple[str, int]]:
    """The brokers Metadata gives a client: where it will connect next."""
    response = wire.call(broker.bootstrap, METADATA, 12, {"topics": []})
    return [(b.host, b.port) for b in response.brokers]


def test_the_advertised_address_is_never_unspecified(start: Callable[..., Served]) -> None:
    everywhere = start("--kafka", "0.0.0.0:0", name="everywhere")
    port = int(everywhere.bootstrap.rsplit(":", 1)[1])
    assert brokers_in_metadata(everywhere) == [("127.0.0.1", port)]
    assert "set --advertise HOST:PORT" in everywhere.log()
    named = start("--advertise", "broker.example:19092", name="named")
    assert brokers_in_metadata(named) == [("broker.example", 19092)]
    assert "bootstrap.servers=broker.example:19092" in named.log()
    same_port = start("--kafka", "0.0.0.0:0", "--advertise", f"{socket.gethostname()}:0")
    port = int(same_port.bootstrap.rsplit(":", 1)[1])
    assert brokers_in_metadata(same_port) == [(socket.gethostname(), port)]


def test_a_client_reaches_the_advertised_address(start: Callable[..., Served]) -> None:
    broker = start("--kafka", "0.0.0.0:0")
    errors: list[KafkaError] = []
    producer = Producer({"bootstrap.servers": broker.bootstrap, "error_cb": errors.append})
    producer.produce("reached", b"x")
    assert producer.flush(20) == 0, errors


def test_a_bad_advertised_address_is_refused_before_serving(tmp_path: Path) -> None:
    message = serve_fails(tmp_path, "--advertise", "broker.example")
    assert "--advertise address 'broker.example' is not HOST:PORT" in message
