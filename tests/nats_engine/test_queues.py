"""Queue semantics as JetStream gives them: AckWait locks, max_deliver, term to dead letters."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator

import nats
import pytest
from bench import nats_server

import tidings
from tidings.engines.nats import names

LOCK_MS = 300


@pytest.fixture
def bus(server: nats_server.NatsServer) -> Iterator[tidings.Bus]:
    """A bus on the test's server."""
    b = tidings.connect(server.url)
    yield b
    b.close()


def receive_one(queue: tidings.Queue, timeout_s: float = 5) -> tidings.Job:
    """The next job (fails on timeout)."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        jobs = queue.receive(max_records=1, timeout_ms=100)
        if jobs:
            return jobs[0]
    raise AssertionError("no job arrived")


def dead_letters(bus: tidings.Bus, topic: str) -> list[tidings.Record]:
    """Every record of the dead-letter topic."""
    consumer = bus.consumer()
    try:
        tp = tidings.TopicPartition(topic, 0)
        consumer.assign(tp)
        consumer.seek(tp, "earliest")
        return consumer.poll(timeout_ms=500)
    finally:
        consumer.close()


def test_the_share_group_is_a_durable_pull_consumer_with_the_queue_settings(
    bus: tidings.Bus, server: nats_server.NatsServer
) -> None:
    queue = bus.queue("jobs", group="workers", lock_timeout_ms=LOCK_MS, max_deliveries=3)
    queue.send(b"x")
    receive_one(queue).ack()
    queue.flush()

    async def info() -> nats.js.api.ConsumerInfo:
        nc = await nats.connect(server.url)
        try:
            js = nc.jetstream()
            found: nats.js.api.ConsumerInfo = await js.consumer_info(
                names.stream_name("jobs", 0), names.share_consumer_name("workers")
            )
            return found
        finally:
            await nc.close()

    config = asyncio.run(info()).config
    assert config.ack_policy == nats.js.api.AckPolicy.EXPLICIT
    assert config.ack_wait == LOCK_MS / 1000
    assert config.max_deliver == 3 + 2
    assert config.durable_name == names.share_consumer_name("workers")


def test_an_expired_lock_is_redelivered_with_its_count(bus: tidings.Bus) -> None:
    queue = bus.queue("jobs", group="workers", lock_timeout_ms=LOCK_MS)
    queue.send(b"slow")
    first = receive_one(queue)
    again = receive_one(queue, timeout_s=LOCK_MS / 1000 + 3)
    assert (again.offset, first.deliveries, again.deliveries) == (first.offset, 1, 2)


def test_past_max_deliveries_a_job_goes_to_the_dead_letters(bus: tidings.Bus) -> None:
    queue = bus.queue(
        "jobs", group="workers", lock_timeout_ms=LOCK_MS, max_deliveries=2, dead_letter_topic="dlq"
    )
    queue.send(b"flaky")
    for _ in range(2):
        receive_one(queue).release()
    queue.flush()
    assert queue.receive(timeout_ms=LOCK_MS) == []
    (dead,) = dead_letters(bus, "dlq")
    assert dead.value == b"flaky"
    assert dead.header("tidings.dlq.deliveries") == b"2"
    assert dead.header("tidings.dlq.topic") == b"jobs"
    assert dead.header("tidings.dlq.partition") == b"0"
    assert dead.header("tidings.dlq.offset") == b"0"


def test_reject_dead_letters_with_the_reason_and_terminates(bus: tidings.Bus) -> None:
    queue = bus.queue("jobs", group="workers", lock_timeout_ms=LOCK_MS, dead_letter_topic="dlq")
    queue.send(b"poison", key=b"k")
    receive_one(queue).reject("cannot parse")
    queue.flush()
    (dead,) = dead_letters(bus, "dlq")
    assert (dead.value, dead.key) == (b"poison", b"k")
    assert dead.header("tidings.dlq.reason") == b"cannot parse"
    assert queue.receive(timeout_ms=2 * LOCK_MS) == []  # terminated: never redelivered


def test_release_with_a_delay_is_a_nak_with_that_delay(bus: tidings.Bus) -> None:
    queue = bus.queue("jobs", group="workers", lock_timeout_ms=5_000)
    queue.send(b"later")
    released = time.monotonic()
    receive_one(queue).release(delay_ms=1_500)  # still delayed at the next receive, however loaded
    queue.flush()
    assert queue.receive(timeout_ms=200) == []
    again = receive_one(queue)
    assert time.monotonic() - released >= 1.45
    assert again.deliveries == 2


def test_a_message_id_is_stored_once(bus: tidings.Bus) -> None:
    bus.create_topic("orders")
    for _ in range(3):
        bus.publish("orders", b"once", headers={"Nats-Msg-Id": "order-1"})
    assert bus.describe_topic("orders").records == 1
