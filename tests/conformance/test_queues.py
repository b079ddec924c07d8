"""Queues: share groups of competing consumers, settled one job at a time (KIP-932)."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import pytest

import tidings
from tidings import Job, TopicPartition
from tidings.engines.base import Capability

from .helpers import read_partition, receive_all

pytestmark = pytest.mark.needs(Capability.SHARE_GROUPS)

LOCK_MS = 400
DELAY_MS = 1_500
"""A delay long enough that a loaded machine still sees the job delayed before it is due."""


def values(jobs: list[Job]) -> list[bytes]:
    """The values of `jobs`, in order."""
    return [j.value or b"" for j in jobs]


@pytest.fixture
def queue(bus: tidings.Bus) -> tidings.Queue:
    """A queue "jobs" with short locks, two deliveries at most and a dead-letter topic."""
    return bus.queue(
        "jobs",
        group="workers",
        lock_timeout_ms=LOCK_MS,
        max_deliveries=2,
        dead_letter_topic="jobs.dlq",
    )


def test_jobs_arrive_in_order_with_their_record(queue: tidings.Queue) -> None:
    queue.send(b"a", key=b"k", headers={"h": b"1"})
    queue.send(b"b")
    jobs = receive_all(queue, 2)
    assert values(jobs) == [b"a", b"b"]
    assert (jobs[0].key, jobs[0].headers, jobs[0].deliveries) == (b"k", (("h", b"1"),), 1)
    assert [j.offset for j in jobs] == [0, 1]
    assert all(j.lock_until > time.time() * 1000 for j in jobs)


def test_accepted_jobs_are_never_delivered_again(queue: tidings.Queue) -> None:
    for i in range(3):
        queue.send(b"%d" % i)
    for job in receive_all(queue, 3):
        job.ack()
    queue.flush()
    assert queue.receive(timeout_ms=LOCK_MS + 300) == []
    assert [(d.available, d.in_flight, d.delayed) for d in queue.depth()] == [(0, 0, 0)]


def test_a_locked_job_goes_to_no_other_consumer(bus: tidings.Bus, queue: tidings.Queue) -> None:
    other = bus.queue("jobs", group="workers", lock_timeout_ms=LOCK_MS)
    queue.send(b"only")
    assert values(receive_all(queue, 1)) == [b"only"]
    assert other.receive(timeout_ms=LOCK_MS // 2) == []


def test_competing_consumers_share_the_work_without_overlap(
    bus: tidings.Bus, queue: tidings.Queue
) -> None:
    other = bus.queue("jobs", group="workers", lock_timeout_ms=LOCK_MS)
    for i in range(20):
        queue.send(b"%d" % i)
    first = queue.receive(max_records=7, timeout_ms=1000)
    second = receive_all(other, 13)
    assert len(first) == 7
    assert sorted(values(first) + values(second)) == sorted(b"%d" % i for i in range(20))


def test_a_released_job_comes_back_with_a_higher_delivery_count(queue: tidings.Queue) -> None:
    queue.send(b"retry me")
    (job,) = receive_all(queue, 1)
    job.release()
    (again,) = receive_all(queue, 1)
    assert (again.value, again.offset, again.deliveries) == (b"retry me", 0, 2)


@pytest.mark.needs(Capability.QUEUE_JOB_STATES)
def test_release_with_a_delay_holds_the_job_back(queue: tidings.Queue) -> None:
    queue.send(b"later")
    (job,) = receive_all(queue, 1)
    released = time.monotonic()
    job.release(delay_ms=DELAY_MS)
    queue.flush()
    assert [d.delayed for d in queue.depth()] == [1]
    (again,) = receive_all(queue, 1, timeout_s=DELAY_MS / 1000 + 10)
    assert time.monotonic() - released >= DELAY_MS / 1000
    assert again.deliveries == 2


def test_an_expired_lock_makes_the_job_available_again(
    bus: tidings.Bus, queue: tidings.Queue
) -> None:
    other = bus.queue("jobs", group="workers", lock_timeout_ms=LOCK_MS)
    queue.send(b"abandoned")
    (job,) = receive_all(queue, 1)
    (again,) = receive_all(other, 1, timeout_s=LOCK_MS / 1000 + 3)
    assert (again.offset, again.deliveries) == (job.offset, 2)
    with pytest.raises(tidings.LockExpiredError, match="expired"):
        job.ack()


def test_extend_lock_keeps_the_job(bus: tidings.Bus, queue: tidings.Queue) -> None:
    other = bus.queue("jobs", group="workers", lock_timeout_ms=LOCK_MS)
    queue.send(b"long work")
    (job,) = receive_all(queue, 1)
    job.extend_lock(3 * LOCK_MS)
    queue.flush()
    assert other.receive(timeout_ms=2 * LOCK_MS) == []
    job.ack()
    queue.flush()
    assert other.receive(timeout_ms=2 * LOCK_MS) == []


def dead_letters(bus: tidings.Bus) -> list[tidings.Record]:
    """Every record in "jobs.dlq"."""
    return read_partition(bus, "jobs.dlq")


def test_reject_sends_the_job_to_the_dead_letters_with_the_reason(
    bus: tidings.Bus, queue: tidings.Queue
) -> None:
    queue.send(b"poison", key=b"k", headers={"trace": b"t1"})
    (job,) = receive_all(queue, 1)
    job.reject(reason="cannot parse")
    queue.flush()
    (dead,) = dead_letters(bus)
    assert (dead.value, dead.key, dead.header("trace")) == (b"poison", b"k", b"t1")
    assert {name: dead.header(f"tidings.dlq.{name}") for name in ("topic", "offset")} == {
        "topic": b"jobs",
        "offset": b"0",
    }
    assert dead.header("tidings.dlq.reason") == b"cannot parse"
    assert dead.header("tidings.dlq.deliveries") == b"1"
    assert queue.receive(timeout_ms=LOCK_MS + 200) == []


def test_past_max_deliveries_a_job_is_dead_lettered(bus: tidings.Bus, queue: tidings.Queue) -> None:
    queue.send(b"flaky")
    for _ in range(2):  # max_deliveries=2
        (job,) = receive_all(queue, 1)
        job.release()
    queue.flush()
    assert queue.receive(timeout_ms=300) == []
    (dead,) = dead_letters(bus)
    assert (dead.value, dead.header("tidings.dlq.deliveries")) == (b"flaky", b"2")


def test_expired_locks_count_as_deliveries(bus: tidings.Bus, queue: tidings.Queue) -> None:
    queue.send(b"hangs")
    receive_all(queue, 1)  # never settled: the lock expires
    (again,) = receive_all(queue, 1, timeout_s=LOCK_MS / 1000 + 3)
    assert again.deliveries == 2
    assert queue.receive(timeout_ms=LOCK_MS + 500) == []  # expired twice: dead
    (dead,) = dead_letters(bus)
    assert dead.value == b"hangs"


def test_without_a_dead_letter_topic_rejected_jobs_are_dropped(bus: tidings.Bus) -> None:
    queue = bus.queue("plain", group="workers", lock_timeout_ms=LOCK_MS)
    queue.send(b"bad")
    (job,) = receive_all(queue, 1)
    job.reject(reason="bad")
    queue.flush()
    assert queue.receive(timeout_ms=LOCK_MS + 200) == []
    assert [t.name for t in bus.list_topics()] == ["plain"]


@pytest.mark.needs(Capability.QUEUE_JOB_STATES)
def test_a_delayed_job_is_invisible_until_due(queue: tidings.Queue) -> None:
    sent = time.monotonic()
    queue.send(b"in a while", delay_ms=DELAY_MS)
    queue.send(b"now")
    (now,) = receive_all(queue, 1)
    assert now.value == b"now"
    now.ack()
    queue.flush()
    assert [(d.available, d.delayed) for d in queue.depth()] == [(0, 1)]
    (late,) = receive_all(queue, 1, timeout_s=DELAY_MS / 1000 + 10)
    assert late.value == b"in a while"
    assert time.monotonic() - sent >= DELAY_MS / 1000


def test_share_groups_and_consumer_groups_read_independently(bus: tidings.Bus) -> None:
    a = bus.queue("events", group="a")
    b = bus.queue("events", group="b")
    for i in range(5):
        a.send(b"%d" % i)
    for job in receive_all(a, 5):
        job.ack()
    assert values(receive_all(b, 5)) == [b"%d" % i for i in range(5)]
    with bus.consumer("events", group="log", from_beginning=True) as consumer:
        assert len(consumer.poll(max_records=10, timeout_ms=1000)) == 5


def test_a_queue_over_many_partitions_delivers_every_job(bus: tidings.Bus) -> None:
    queue = bus.queue("wide", group="w", partitions=4)
    for i in range(40):
        queue.send(b"%d" % i, key=b"%d" % i)
    jobs = receive_all(queue, 40)
    assert sorted(values(jobs)) == sorted(b"%d" % i for i in range(40))
    assert len({j.record.partition for j in jobs}) == 4


def test_latest_skips_what_was_sent_before_the_group_started(bus: tidings.Bus) -> None:
    bus.create_topic("feed")
    bus.publish("feed", b"old")
    queue = bus.queue("feed", group="new", auto_offset_reset="latest")
    assert queue.receive(timeout_ms=100) == []
    queue.send(b"fresh")
    assert values(receive_all(queue, 1)) == [b"fresh"]


def test_settling_twice_is_refused(queue: tidings.Queue) -> None:
    queue.send(b"once")
    (job,) = receive_all(queue, 1)
    job.ack()
    for settle in (job.ack, job.release, lambda: job.reject("x")):
        with pytest.raises(tidings.AlreadySettledError, match="already settled"):
            settle()


@pytest.mark.parametrize(
    "options",
    [{"max_deliveries": 0}, {"lock_timeout_ms": 0}, {"auto_offset_reset": "middle"}],
)
def test_bad_queue_options_are_refused(bus: tidings.Bus, options: dict[str, Any]) -> None:
    with pytest.raises(tidings.ConfigurationError, match=next(iter(options))):
        bus.queue("jobs", group="w", **options)
    assert bus.list_topics() == []


def test_negative_delays_are_refused(queue: tidings.Queue) -> None:
    with pytest.raises(tidings.ConfigurationError, match="delay_ms"):
        queue.send(b"v", delay_ms=-1)
    queue.send(b"v")
    (job,) = receive_all(queue, 1)
    with pytest.raises(tidings.ConfigurationError, match="delay_ms"):
        job.release(delay_ms=-5)
    with pytest.raises(tidings.ConfigurationError, match="ms"):
        job.extend_lock(-1)
    job.ack()  # the job is still the caller's to settle


def test_share_groups_are_listed_and_deleted(bus: tidings.Bus, queue: tidings.Queue) -> None:
    queue.send(b"v")
    (job,) = receive_all(queue, 1)
    job.ack()
    queue.flush()
    assert bus.list_share_groups() == ["workers"]
    bus.delete_share_group("workers")
    assert bus.list_share_groups() == []
    again = bus.queue("jobs", group="workers")
    assert values(receive_all(again, 1)) == [b"v"]  # the group starts over; records stay


def test_a_closed_queue_refuses_receive(queue: tidings.Queue) -> None:
    queue.close()
    with pytest.raises(tidings.ClosedError):
        queue.receive(timeout_ms=10)


def test_async_queue(bus_url: str) -> None:
    async def main() -> None:
        bus = await tidings.connect_async(bus_url)
        async with bus, bus.queue("jobs", group="w") as queue:
            await queue.send(b"a")
            await queue.send(b"b")
            jobs = await queue.receive(max_records=10, timeout_ms=1000)
            assert values(jobs) == [b"a", b"b"]
            for job in jobs:
                job.ack()
            await queue.flush()
            assert await queue.receive(timeout_ms=50) == []

    asyncio.run(main())


def test_queue_records_live_in_an_ordinary_topic(bus: tidings.Bus, queue: tidings.Queue) -> None:
    queue.send(b"x")
    tp = TopicPartition("jobs", 0)
    assert bus.describe_topic("jobs").partitions[tp.partition].end_offset == 1


@pytest.mark.needs(Capability.QUEUE_PRIORITIES)
def test_higher_priority_jobs_are_delivered_first(queue: tidings.Queue) -> None:
    for i in range(3):
        queue.send(b"low %d" % i)
    queue.send(b"urgent", priority=9)
    for i in range(2):
        queue.send(b"high %d" % i, priority=5)
    jobs = receive_all(queue, 6)
    assert values(jobs) == [b"urgent", b"high 0", b"high 1", b"low 0", b"low 1", b"low 2"]


@pytest.mark.needs(Capability.QUEUE_PRIORITIES)
def test_a_released_job_keeps_its_priority(queue: tidings.Queue) -> None:
    queue.send(b"low")
    queue.send(b"high", priority=7)
    first = queue.receive(max_records=1, timeout_ms=1000)
    assert values(first) == [b"high"]
    first[0].release()
    assert values(receive_all(queue, 2)) == [b"high", b"low"]


@pytest.mark.parametrize("priority", [-1, 10, 1.5, True])
def test_a_priority_outside_0_to_9_is_refused(queue: tidings.Queue, priority: object) -> None:
    with pytest.raises(tidings.ConfigurationError, match="priority"):
        queue.send(b"v", priority=priority)  # type: ignore[arg-type]
    assert queue.receive(timeout_ms=50) == []
