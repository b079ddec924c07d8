"""A cluster that cannot be reached, refuses the credentials or refuses a topic: a clear
tidings error, in bounded time, never a hang."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

import pytest
from bench.postgres_server import free_port

import tidings
from tests.conformance.kafka_brokers import Broker, start_serve, start_tansu
from tidings.engines.kafka import ClusterUnavailableError

BOUND_S = 12.0
"""Longest any failure may take: the default request timeout (10 s) and some slack."""


def test_unreachable_cluster(subtests: pytest.Subtests) -> None:
    nobody = free_port()
    for url in (f"kafka://127.0.0.1:{nobody}", f"kafka://127.0.0.1:{nobody},127.0.0.1:1"):
        with subtests.test(url=url):
            start = time.monotonic()
            with pytest.raises(ClusterUnavailableError, match=r"no broker of kafka://") as info:
                tidings.connect(url)
            assert time.monotonic() - start < BOUND_S
            assert isinstance(info.value, tidings.EngineUnavailableError)
            assert isinstance(info.value, ConnectionError)
            assert info.value.url == url


def test_unknown_setting_is_refused() -> None:
    with pytest.raises(tidings.ConfigurationError, match=r"no\.such\.setting"):
        tidings.connect("kafka://127.0.0.1:9092?no_such_setting=1")


@pytest.mark.parametrize(
    "url", ["kafka://", "kafka://host:9092/path", "kafka://h:1?replication_factor=x"]
)
def test_malformed_url_is_refused(url: str) -> None:
    with pytest.raises(tidings.ConfigurationError):
        tidings.connect(url)


def test_wrong_credentials(tmp_path: Path, brokers: Callable[[Broker], Broker]) -> None:
    users = tmp_path / "users.toml"
    users.write_text('alice = "wonderland"\n')
    broker = brokers(
        start_serve(tmp_path / "data", "--sasl-users", str(users), "--sasl-mechanisms", "PLAIN")
    )
    address = broker.wait()
    sasl = f"kafka://{address}?security_protocol=SASL_PLAINTEXT&sasl_mechanism=PLAIN"
    start = time.monotonic()
    with pytest.raises(tidings.ConfigurationError, match="credentials") as info:
        tidings.connect(f"{sasl}&sasl_username=alice&sasl_password=guess")
    assert time.monotonic() - start < BOUND_S
    assert "guess" not in str(info.value)  # the password is never repeated
    with tidings.connect(f"{sasl}&sasl_username=alice&sasl_password=wonderland") as bus:
        bus.create_topic("orders")
        assert bus.publish("orders", b"v").offset == 0


def test_refused_topic(tmp_path: Path, brokers: Callable[[Broker], Broker]) -> None:
    address = brokers(start_serve(tmp_path / "data")).wait()
    with tidings.connect(f"kafka://{address}?replication_factor=3") as bus:
        start = time.monotonic()
        with pytest.raises(tidings.TopicError, match="refused") as info:
            bus.create_topic("orders")
        assert time.monotonic() - start < BOUND_S
        assert info.value.topic == "orders"
        assert "replication" in str(info.value)
        with pytest.raises(tidings.TopicNotFoundError):
            bus.publish("orders", b"v")


@pytest.mark.parametrize("start", [start_serve, start_tansu], ids=["serve", "tansu"])
def test_missing_topic(start: Callable[[], Broker], brokers: Callable[[Broker], Broker]) -> None:
    address = brokers(start()).wait()
    with tidings.connect(f"kafka://{address}") as bus:
        began = time.monotonic()
        with pytest.raises(tidings.TopicNotFoundError):
            bus.publish("nowhere", b"v")
        with pytest.raises(tidings.TopicNotFoundError):
            bus.consumer("nowhere", group="g").poll(timeout_ms=10)
        assert time.monotonic() - began < BOUND_S


def test_queues_are_refused_with_what_provides_them(brokers: Callable[[Broker], Broker]) -> None:
    address = brokers(start_tansu()).wait()
    with (
        tidings.connect(f"kafka://{address}") as bus,
        pytest.raises(tidings.CapabilityError, match=r"sqlite://, memory://"),
    ):
        bus.queue("jobs", group="workers").receive(timeout_ms=10)
