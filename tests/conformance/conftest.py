"""Every conformance test runs once per engine: the semantics are written once.

A test that needs an engine capability says so with `@pytest.mark.needs(Capability.X)`;
it is generated only for the engines that declare that capability (never skipped).

Where a broker departs from Kafka's documented behaviour, the test says so with
`@pytest.mark.differs("kafka-tansu", "what Kafka documents; what the broker does")` and is
not generated for that broker: it runs on the brokers that behave as Kafka documents.

The runs on engines that need a server the suite starts (the Kafka brokers, nats-server)
are marked `servers`: `make check` leaves them to `make test`.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

import tidings
from tidings.engines.base import Capability
from tidings.engines.kafka import KAFKA_CAPABILITIES
from tidings.engines.log.engine import LOG_CAPABILITIES
from tidings.engines.nats import NATS_CAPABILITIES

from .kafka_brokers import GROUP_TIMEOUTS, BrokerPool
from .nats_server import fresh_nats_url

ENGINES: dict[str, frozenset[Capability]] = {
    "memory": LOG_CAPABILITIES - {Capability.DURABLE, Capability.MULTI_PROCESS},
    "sqlite": LOG_CAPABILITIES,
    "kafka-serve": KAFKA_CAPABILITIES,
    # Tansu does not serve CreatePartitions, part of Kafka's protocol since 1.0 (KIP-195)
    "kafka-tansu": KAFKA_CAPABILITIES - {Capability.ADD_PARTITIONS},
    "nats": NATS_CAPABILITIES,
}
"""Each engine the suite runs on, with the capabilities it declares."""
EMBEDDED = frozenset({"memory", "sqlite"})
"""The engines that run in the test's own process, with no server to start."""


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    """Parametrize `bus_url` with every engine that has what the test needs."""
    if "bus_url" not in metafunc.fixturenames:
        return
    needed = {c for mark in metafunc.definition.iter_markers("needs") for c in mark.args}
    wrong = {mark.args[0] for mark in metafunc.definition.iter_markers("differs")}
    engines = [name for name, caps in ENGINES.items() if needed <= caps and name not in wrong]
    params = [
        pytest.param(name, marks=() if name in EMBEDDED else pytest.mark.servers)
        for name in engines
    ]
    metafunc.parametrize("bus_url", params, indirect=True)


@pytest.fixture(scope="session")
def kafka_brokers() -> Iterator[BrokerPool]:
    """Kafka-compatible brokers, each started ahead of the test that takes it."""
    pool = BrokerPool()
    yield pool
    pool.close()


@pytest.fixture
def bus_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """The URL of a fresh, empty bus on each engine."""
    if request.param == "memory":
        yield "memory://"
    elif request.param == "sqlite":
        yield f"sqlite://{tmp_path}/bus.db"
    elif request.param in ("kafka-serve", "kafka-tansu"):
        pool: BrokerPool = request.getfixturevalue("kafka_brokers")
        with pool.fresh(request.param) as bootstrap:
            yield f"kafka://{bootstrap}?{GROUP_TIMEOUTS}"
    elif request.param == "nats":
        yield from fresh_nats_url(tmp_path)
    else:
        raise AssertionError(f"no fixture for engine {request.param!r}")


@pytest.fixture
def bus(bus_url: str) -> Iterator[tidings.Bus]:
    """A connected sync bus, closed after the test."""
    b = tidings.connect(bus_url)
    yield b
    b.close()
