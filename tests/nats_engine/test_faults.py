"""Faults: an unreachable server, wrong credentials, a refused stream, a crashed server."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import pytest
from bench import nats_server

import tidings
from tidings.engines.nats.connection import NatsConnectError, NatsError

BOUND_S = 10
"""Every failure must be reported within this many seconds."""


def test_an_unreachable_server_is_a_clear_error_at_once() -> None:
    port = nats_server.free_port()
    started = time.monotonic()
    with pytest.raises(NatsConnectError, match="cannot connect to NATS") as info:
        tidings.connect(f"nats://127.0.0.1:{port}?connect_timeout=1")
    assert time.monotonic() - started < BOUND_S
    assert isinstance(info.value, tidings.EngineUnavailableError)
    assert isinstance(info.value, ConnectionError)
    assert info.value.url == f"nats://127.0.0.1:{port}"


def test_wrong_credentials_are_a_clear_error(tmp_path: Path) -> None:
    with nats_server.running(tmp_path / "nats", "--user", "app", "--pass", "secret") as server:
        host = f"127.0.0.1:{server.port}"
        started = time.monotonic()
        with pytest.raises(tidings.ConfigurationError, match="refused the credentials") as info:
            tidings.connect(f"nats://app:wrong@{host}")
        assert "wrong" not in str(info.value)  # the password is never repeated
        assert time.monotonic() - started < BOUND_S
        bus = tidings.connect(f"nats://app:secret@{host}")
        try:
            bus.create_topic("orders")
            assert bus.publish("orders", b"v").offset == 0
        finally:
            bus.close()


def test_a_refused_stream_is_a_clear_error(server: nats_server.NatsServer) -> None:
    bus = tidings.connect(server.url)
    try:
        started = time.monotonic()
        # a retention limit JetStream refuses: more bytes than the server allows a stream
        with pytest.raises(NatsError, match="NATS refused to create stream"):
            bus.create_topic("huge", retention_bytes=1 << 62)
        assert time.monotonic() - started < BOUND_S
        assert [t.name for t in bus.list_topics()] == []  # nothing half-made is left
    finally:
        bus.close()


def test_a_server_gone_mid_session_gives_a_bounded_error(server: nats_server.NatsServer) -> None:
    bus = tidings.connect(f"{server.url}?request_timeout=1")
    try:
        bus.create_topic("orders")
        server.kill()
        started = time.monotonic()
        with pytest.raises(NatsError) as info:
            bus.describe_topic("orders")
        assert isinstance(info.value, tidings.EngineUnavailableError)
        assert time.monotonic() - started < BOUND_S
    finally:
        server.restart()
        bus.close()


def test_consumers_recover_from_a_killed_server_and_nothing_acknowledged_is_lost(
    server: nats_server.NatsServer,
) -> None:
    bus = tidings.connect(server.url)
    consumer_bus = tidings.connect(server.url)
    try:
        bus.create_topic("orders", partitions=2)
        acknowledged: list[bytes] = []
        seen: set[bytes] = set()
        stop = threading.Event()

        def consume() -> None:
            with consumer_bus.consumer("orders", group="g", from_beginning=True) as consumer:
                while not stop.is_set():
                    try:
                        records = consumer.poll(timeout_ms=200)
                        seen.update(r.value or b"" for r in records)
                        consumer.commit()
                    except tidings.TidingsError:
                        time.sleep(0.1)  # the server is restarting: try again

        reader = threading.Thread(target=consume)
        reader.start()
        for i in range(50):
            bus.publish("orders", b"%d" % i)
            acknowledged.append(b"%d" % i)
        server.kill()
        time.sleep(0.5)
        server.restart()
        deadline = time.monotonic() + 20
        i = 50
        while i < 100 and time.monotonic() < deadline:
            try:
                bus.publish("orders", b"%d" % i)
            except tidings.TidingsError:
                time.sleep(0.2)  # reconnecting: the publish was not acknowledged
                continue
            acknowledged.append(b"%d" % i)
            i += 1
        while not set(acknowledged) <= seen and time.monotonic() < deadline:
            time.sleep(0.1)
        stop.set()
        reader.join(10)
        assert set(acknowledged) <= seen, f"lost: {sorted(set(acknowledged) - seen)}"
        assert bus.describe_topic("orders").records >= len(acknowledged)
    finally:
        consumer_bus.close()
        bus.close()
