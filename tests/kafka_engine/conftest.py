"""Brokers for the Kafka engine's own tests: started per test, stopped by their pid."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import pytest

from tests.conformance.kafka_brokers import Broker


@pytest.fixture
def brokers() -> Iterator[Callable[[Broker], Broker]]:
    """Registers brokers a test starts; every one still running is stopped at the end."""
    started: list[Broker] = []

    def keep(broker: Broker) -> Broker:
        started.append(broker)
        return broker

    yield keep
    for broker in started:
        broker.stop()
