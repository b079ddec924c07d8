"""Administering a queue: peek, purge, dead-letter counts and redrive (SQS/RabbitMQ style)."""

from __future__ import annotations

import asyncio

import pytest

import tidings
from tidings.engines.base import Capability, ShareConfig

from .helpers import receive_all

pytestmark = pytest.mark.needs(Capability.SHARE_GROUPS)

LOCK_MS = 5_000


@pytest.fixture
def queue(bus: tidings.Bus) -> tidings.Queue:
    """A queue "jobs" with a dead-letter topic "jobs.dlq"."""
    return bus.queue("jobs", group="workers", lock_timeout_ms=LOCK_MS, dead_letter_topic="jobs.dlq")


def test_peek_shows_the_next_jobs_without_locking_or_counting(queue: tidings.Queue) -> None:
    for v in (b"a", b"b", b"c"):
        queue.send(v, key=b"k")
    peeked = queue.peek()
    assert [(r.offset, r.key, r.value) for r in peeked] == [
        (0, b"k", b"a"),
        (1, b"k", b"b"),
        (2, b"k", b"c"),
    ]
    assert [r.value for r in queue.peek(max_records=2)] == [b"a", b"b"]
    assert queue.peek(max_records=0) == []
    jobs = receive_all(queue, 3)
    assert [j.deliveries for j in jobs] == [1, 1, 1]


@pytest.mark.needs(Capability.QUEUE_JOB_STATES)
def test_peek_skips_locked_and_delayed_jobs_and_shows_released_ones(
    queue: tidings.Queue,
) -> None:
    queue.send(b"a")
    queue.send(b"b")
    queue.send(b"later", delay_ms=60_000)
    queue.send(b"c")
    first = receive_all(queue, 1)
    assert [r.value for r in queue.peek()] == [b"b", b"c"]
    first[0].release()
    queue.flush()
    assert [r.value for r in queue.peek()] == [b"a", b"b", b"c"]


def test_peek_of_a_new_group_starts_where_the_group_would(bus: tidings.Bus) -> None:
    bus.create_topic("events")
    bus.publish("events", b"old")
    assert [r.value for r in bus.queue("events", group="fresh").peek()] == [b"old"]
    latest = bus.queue("events", group="tail", auto_offset_reset="latest")
    assert latest.peek() == []


def test_negative_max_records_is_refused(queue: tidings.Queue) -> None:
    with pytest.raises(tidings.ConfigurationError, match="max_records"):
        queue.peek(max_records=-1)
    with pytest.raises(tidings.ConfigurationError, match="max_records"):
        queue.redrive(max_records=-1)


def test_purge_settles_available_and_delayed_jobs_and_keeps_in_flight_ones(
    bus: tidings.Bus, queue: tidings.Queue
) -> None:
    for v in (b"a", b"b", b"c"):
        queue.send(v)
    queue.send(b"later", delay_ms=60_000)
    (held,) = receive_all(queue, 1)
    assert queue.purge() == 3
    assert [(d.available, d.in_flight, d.delayed) for d in queue.depth()] == [(0, 1, 0)]
    assert queue.peek() == []
    held.ack()  # the consumer holding a job when the queue was purged still settles it
    queue.flush()
    assert queue.aio.refused == 0
    queue.send(b"new")
    assert [j.value for j in receive_all(queue, 1)] == [b"new"]
    assert bus.describe_topic("jobs").records == 5  # a log: purging deletes nothing
    assert queue.purge() == 0


def test_purge_of_a_group_that_never_read_skips_the_backlog(bus: tidings.Bus) -> None:
    fresh = bus.queue("backlog", group="late")
    for i in range(4):
        fresh.send(b"%d" % i)
    assert fresh.purge() == 4
    assert fresh.receive(timeout_ms=100) == []
    assert bus.queue("backlog", group="other").peek(max_records=100) != []


def test_redrive_copies_dead_letters_back_once(bus: tidings.Bus, queue: tidings.Queue) -> None:
    queue.send(b"a", key=b"ka", headers={"trace": b"1"})
    queue.send(b"b")
    queue.send(b"ok")
    jobs = receive_all(queue, 3)
    jobs[0].reject("bad input")
    jobs[1].reject("bad input")
    jobs[2].ack()
    queue.flush()
    assert queue.dead_letters() == 2
    assert queue.redrive() == 2
    assert queue.dead_letters() == 0
    assert queue.redrive() == 0
    again = receive_all(queue, 2)
    assert [(j.key, j.value) for j in again] == [(b"ka", b"a"), (None, b"b")]
    assert again[0].headers == (("trace", b"1"), ("tidings.redrives", b"1"))
    again[0].reject("still bad")
    queue.flush()
    assert queue.redrive() == 1
    (third,) = receive_all(queue, 1)
    assert third.headers == (("trace", b"1"), ("tidings.redrives", b"2"))
    assert bus.describe_topic("jobs.dlq").records == 3  # dead letters stay in their log


def test_redrive_takes_at_most_max_records(queue: tidings.Queue) -> None:
    for i in range(3):
        queue.send(b"%d" % i)
    for job in receive_all(queue, 3):
        job.reject()
    queue.flush()
    assert queue.redrive(max_records=2) == 2
    assert queue.dead_letters() == 1
    assert queue.redrive(max_records=0) == 0
    assert queue.redrive() == 1
    assert sorted(j.value or b"" for j in receive_all(queue, 3)) == [b"0", b"1", b"2"]


def test_redrive_needs_a_dead_letter_topic(bus: tidings.Bus) -> None:
    plain = bus.queue("plain", group="workers")
    assert plain.dead_letters() == 0
    with pytest.raises(tidings.ConfigurationError, match="dead_letter_topic"):
        plain.redrive()


def test_admin_of_an_unknown_topic_names_it(bus_url: str) -> None:
    async def main() -> None:
        bus = await tidings.connect_async(bus_url)
        async with bus:
            config = ShareConfig("workers", "nowhere", dead_letter_topic="nowhere.dlq")
            for call in (
                bus.engine.queue_peek(config, 1),
                bus.engine.queue_purge(config),
                bus.engine.queue_redrive(config, None),
            ):
                with pytest.raises(tidings.TopicNotFoundError, match="'nowhere'"):
                    await call
            await bus.create_topic("nowhere")
            with pytest.raises(tidings.TopicNotFoundError, match=r"'nowhere\.dlq'"):
                await bus.engine.queue_dead_letters(config)

    asyncio.run(main())


def test_list_queues_names_each_group_and_topic(bus: tidings.Bus, queue: tidings.Queue) -> None:
    queue.send(b"x")
    (job,) = receive_all(queue, 1)
    job.reject()
    queue.flush()
    queue.redrive()
    bus.queue("jobs", group="auditors").purge()

    assert bus.list_queues() == [("auditors", "jobs"), ("workers", "jobs")]
