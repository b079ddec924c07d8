"""Queues across processes: competing consumers, a consumer killed holding locks, dead letters."""

from __future__ import annotations

import time

import pytest

import tidings
from tests.conformance.helpers import read_partition

from .procs import Child, Children

pytestmark = pytest.mark.slow

GROUP = "workers"

# Receives ARGS[3] jobs, says "got OFFSET DELIVERIES LOCK_UNTIL" for each, accepts every
# ARGS[4]-th one and flushes, says "acked OFFSET" for those, then "holding" and waits on
# stdin forever, its other locks held. ARGS: topic, group, lock ms, take, ack every.
HOLDER = """
topic, group, lock_ms, take, every = ARGS[0], ARGS[1], int(ARGS[2]), int(ARGS[3]), int(ARGS[4])
bus = tidings.connect(URL)
queue = bus.queue(topic, group=group, lock_timeout_ms=lock_ms)
say("ready")
jobs = []
while len(jobs) < take:
    jobs.extend(queue.receive(max_records=take - len(jobs), timeout_ms=1000))
say_many([f"got {j.offset} {j.deliveries} {j.lock_until}" for j in jobs])
done = jobs[::every]
for job in done:
    job.ack()
queue.flush()
say_many([f"acked {j.offset}" for j in done])
say("refused", queue.aio.refused)
say("holding")
sys.stdin.read()
"""

# On "go", sends ARGS[2] jobs one by one ("job-I"), saying "sent OFFSET" after each returned.
# ARGS: topic, group, count.
SENDER = """
topic, group, count = ARGS[0], ARGS[1], int(ARGS[2])
bus = tidings.connect(URL)
queue = bus.queue(topic, group=group)
say("ready")
sys.stdin.readline()
for i in range(count):
    meta = queue.send(b"job-%d" % i)
    say("sent", meta.offset)
bus.close()
"""

# Receives up to 10 jobs at a time until "stop" arrives on stdin: says "got OFFSET
# DELIVERIES VALUE" for each job received, works ARGS[3] ms per job, accepts them all,
# flushes and says "acked OFFSET" for each. At the end, "refused N" (settlements refused
# for lost locks). ARGS: topic, group, lock ms, work ms per job.
COMPETITOR = """
import threading

topic, group, lock_ms, work_s = ARGS[0], ARGS[1], int(ARGS[2]), float(ARGS[3]) / 1000
stop = threading.Event()


def watch_stdin() -> None:
    for line in sys.stdin:
        if line.strip() == "stop":
            break
    stop.set()


threading.Thread(target=watch_stdin, daemon=True).start()
bus = tidings.connect(URL)
queue = bus.queue(topic, group=group, lock_timeout_ms=lock_ms)
say("ready")
while not stop.is_set():
    jobs = queue.receive(max_records=10, timeout_ms=100)
    if not jobs:
        continue
    say_many([f"got {j.offset} {j.deliveries} {j.value.decode()}" for j in jobs])
    time.sleep(work_s * len(jobs))
    for job in jobs:
        job.ack()
    queue.flush()
    say_many([f"acked {j.offset}" for j in jobs])
say("refused", queue.aio.refused)
queue.close()
bus.close()
"""

# Receives until ARGS[3] jobs are rejected, each with the reason "cannot parse VALUE",
# then flushes, says "rejected PARTITION OFFSET" for each and exits.
# ARGS: topic, group, dead-letter topic, count.
REJECTER = """
topic, group, dead, count = ARGS[0], ARGS[1], ARGS[2], int(ARGS[3])
bus = tidings.connect(URL)
queue = bus.queue(topic, group=group, dead_letter_topic=dead, lock_timeout_ms=30_000)
say("ready")
rejected = []
while len(rejected) < count:
    for job in queue.receive(max_records=count - len(rejected), timeout_ms=1000):
        job.reject(reason="cannot parse " + job.value.decode())
        rejected.append(job)
queue.flush()
say_many([f"rejected {j.record.partition} {j.offset}" for j in rejected])
say("refused", queue.aio.refused)
queue.close()
bus.close()
"""


def now_ms() -> int:
    """Wall-clock milliseconds, the clock locks are kept in."""
    return time.time_ns() // 1_000_000


def offsets(child: Child, prefix: str) -> list[int]:
    """The offsets in `child`'s lines that start with `prefix`."""
    return [int(words[0]) for words in child.fields(prefix)]


def wait_ready(child: Child) -> None:
    """Wait until a child started with `ready=False` says it is ready."""
    child.wait_for(lambda: bool(child.lines("ready")), 30, "ready")


def receive_until(
    queue: tidings.Queue, done: list[tidings.Job], count: int, timeout_s: float, what: str
) -> None:
    """Receive into `done` until it holds `count` jobs; fail after `timeout_s`."""
    deadline = time.monotonic() + timeout_s
    while len(done) < count:
        left = deadline - time.monotonic()
        assert left > 0, f"timed out after {timeout_s}s waiting for {what}: {len(done)}/{count}"
        done.extend(queue.receive(max_records=count - len(done), timeout_ms=min(500, left * 1000)))


def test_a_consumer_killed_holding_locks_loses_no_job(children: Children, store_url: str) -> None:
    total, take, every, lock_ms, mine_lock_ms = 200, 50, 5, 2000, 30_000
    with tidings.connect(store_url) as bus:
        queue = bus.queue("jobs", group=GROUP, lock_timeout_ms=mine_lock_ms)
        for i in range(total):
            queue.send(b"job-%d" % i)
        holder = children.start("holder", HOLDER, store_url, "jobs", GROUP, lock_ms, take, every)
        holder.wait_for(lambda: bool(holder.lines("holding")), what="the holder to settle a few")
        holder.kill()

        got = holder.fields("got")
        held = {int(o) for o, _, _ in got}
        locked_until = {int(o): int(until) for o, _, until in got}
        acked_there = set(offsets(holder, "acked"))
        lock_until = min(locked_until.values())
        assert len(held) == take and all(n == "1" for _, n, _ in got)
        assert len(acked_there) == take // every and acked_there <= held
        assert holder.lines("refused") == ["refused 0"]
        locked = held - acked_there

        # Right after the kill: every other job comes, none of those still locked.
        early: list[tidings.Job] = []
        receive_until(queue, early, total - take, 10, "the jobs nobody holds")
        early.extend(queue.receive(max_records=total, timeout_ms=200))
        checked = now_ms()
        assert checked < lock_until, (
            f"the check ended {checked - lock_until} ms after the locks expired: too late to "
            "show they held"
        )
        assert {j.offset for j in early} == set(range(total)) - held
        assert all(j.deliveries == 1 for j in early)

        # After the lock timeout: exactly the killed consumer's unaccepted jobs, once more.
        late: list[tidings.Job] = []
        receive_until(queue, late, len(locked), lock_ms / 1000 + 10, "the abandoned jobs")
        assert sorted(j.offset for j in late) == sorted(locked)
        assert all(j.deliveries == 2 for j in late)
        for job in late:
            acquired_at = job.lock_until - mine_lock_ms
            assert acquired_at >= locked_until[job.offset], (
                f"job {job.offset} was handed out {locked_until[job.offset] - acquired_at} ms "
                "before the killed consumer's lock on it expired"
            )
        redelivered_after = max(j.lock_until - mine_lock_ms for j in late) - lock_until
        assert all(job.value == b"job-%d" % job.offset for job in early + late)

        for job in early + late:
            job.ack()
        queue.flush()
        assert queue.aio.refused == 0
        assert queue.receive(max_records=total, timeout_ms=300) == []
        assert [(d.available, d.in_flight, d.delayed) for d in queue.depth()] == [(0, 0, 0)]

    acked_here = [j.offset for j in early + late]
    assert len(acked_here) == len(set(acked_here)), "a job was accepted twice here"
    assert not acked_there & set(acked_here), "a job accepted by the killed consumer came back"
    assert acked_there | set(acked_here) == set(range(total))
    print(
        f"locks of the killed consumer seen held {lock_until - checked} ms before they expired; "
        f"its {len(locked)} jobs all taken again within {redelivered_after} ms after"
    )


def test_competing_consumers_in_processes_take_each_job_once(
    children: Children, store_url: str
) -> None:
    total, lock_ms, work_ms = 600, 10_000, 1
    with tidings.connect(store_url) as bus:
        bus.queue("jobs", group=GROUP).close()  # the topic, before anyone races to create it
        names = ("c0", "c1", "c2")
        consumers = [
            children.start(
                name, COMPETITOR, store_url, "jobs", GROUP, lock_ms, work_ms, ready=False
            )
            for name in names
        ]
        sender = children.start("sender", SENDER, store_url, "jobs", GROUP, total, ready=False)
        for child in (*consumers, sender):
            wait_ready(child)

        started = time.monotonic()
        sender.send("go")

        def acked() -> int:
            return sum(len(c.lines("acked ")) for c in consumers)

        # the sender exits once it has sent everything: wait on a consumer, which stays
        consumers[0].wait_for(lambda: acked() >= total, 60, f"{total} jobs to be accepted")
        wall_s = time.monotonic() - started
        sender.finish()
        for child in consumers:
            child.send("stop")
        for child in consumers:
            child.finish()

        depth = bus.queue("jobs", group=GROUP).depth()
        assert [(d.available, d.in_flight, d.delayed) for d in depth] == [(0, 0, 0)]

    assert sorted(offsets(sender, "sent")) == list(range(total))
    got = {c.name: c.fields("got") for c in consumers}
    # Locks of 10 s outlast the run: a job handed out twice, whether to two consumers at
    # once or again after a lost lock, would show as a repeated offset or a second delivery.
    everything = [int(o) for lines in got.values() for o, _, _ in lines]
    assert sorted(everything) == list(range(total)), "a job was lost or handed out twice"
    assert all(n == "1" for lines in got.values() for _, n, _ in lines)
    assert all(v == f"job-{o}" for lines in got.values() for o, _, v in lines)
    acked_offsets = [o for c in consumers for o in offsets(c, "acked")]
    assert sorted(acked_offsets) == list(range(total)), "a job was not accepted exactly once"
    for c in consumers:
        assert sorted(offsets(c, "acked")) == sorted(int(o) for o, _, _ in got[c.name])
        assert c.lines("refused") == ["refused 0"]
    shares = {name: len(lines) for name, lines in got.items()}
    assert all(shares.values()), f"a consumer got no work: {shares}"
    print(f"{total} jobs through 3 consumer processes in {wall_s:.2f}s; shares {shares}")


def test_jobs_rejected_in_another_process_reach_the_dead_letters(
    children: Children, store_url: str
) -> None:
    total = 40
    with tidings.connect(store_url) as bus:
        queue = bus.queue("jobs", group=GROUP, partitions=2, dead_letter_topic="jobs.dlq")
        sent = {}
        for i in range(total):
            meta = queue.send(b"v%d" % i, key=b"k%d" % i, headers={"trace": b"t%d" % i})
            sent[(meta.partition, meta.offset)] = i
        assert {p for p, _ in sent} == {0, 1}
        rejecter = children.start("rejecter", REJECTER, store_url, "jobs", GROUP, "jobs.dlq", total)
        rejecter.finish()
        assert rejecter.lines("refused") == ["refused 0"]
        rejected = {(int(p), int(o)) for p, o in rejecter.fields("rejected")}
        assert rejected == set(sent)

        dead = read_partition(bus, "jobs.dlq")
        assert queue.receive(max_records=total, timeout_ms=300) == []
        assert [(d.available, d.in_flight, d.delayed) for d in queue.depth()] == [(0, 0, 0)] * 2

    assert len(dead) == total
    found = set()
    for record in dead:
        where = (
            int(record.header("tidings.dlq.partition") or b"-1"),
            int(record.header("tidings.dlq.offset") or b"-1"),
        )
        i = sent[where]
        assert (record.value, record.key, record.header("trace")) == (
            b"v%d" % i,
            b"k%d" % i,
            b"t%d" % i,
        )
        assert record.header("tidings.dlq.topic") == b"jobs"
        assert record.header("tidings.dlq.deliveries") == b"1"
        assert record.header("tidings.dlq.reason") == b"cannot parse v%d" % i
        found.add(where)
    assert found == set(sent), "a rejected job is missing from the dead letters, or is there twice"
