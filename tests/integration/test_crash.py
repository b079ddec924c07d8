"""Crash safety: a process killed with SIGKILL loses nothing it was told is stored."""

from __future__ import annotations

import time
from collections import Counter, defaultdict

import pytest

import tidings

from .checks import read_dense
from .procs import Child, Children
from .scripts import WORKER

pytestmark = pytest.mark.slow

TOPIC = "events"
PARTITIONS = 3
KILL_AFTER_ACKS = 3000
BATCH = 25

# Publishes forever in three ways and acknowledges each record once its call returned:
# "a PARTITION OFFSET VALUE". Values say how they were sent: s:I (publish), f:I:J (a
# producer future), m:I:J:N (record J of a publish_many of N).
PRODUCER = f"""
topic = ARGS[0]
bus = tidings.connect(URL)
producer = bus.producer(linger_ms=2)
say("ready")
i = 0
while True:
    meta = bus.publish(topic, b"s:%d" % i)
    say("a", meta.partition, meta.offset, f"s:{{i}}")
    values = [f"f:{{i}}:{{j}}" for j in range(20)]
    futures = [producer.send(topic, v.encode()) for v in values]
    metas = [f.result() for f in futures]
    say_many([f"a {{m.partition}} {{m.offset}} {{v}}" for m, v in zip(metas, values)])
    values = [f"m:{{i}}:{{j}}:{BATCH}" for j in range({BATCH})]
    published = bus.publish_many(topic, [v.encode() for v in values])
    say_many([f"a {{m.partition}} {{m.offset}} {{v}}" for m, v in zip(published, values)])
    i += 1
"""

# Reads the topic in a group and commits after every poll: "c PARTITION NEXT_OFFSET".
COMMITTER = """
from tidings import TopicPartition

topic, group = ARGS
bus = tidings.connect(URL)
consumer = bus.consumer(topic, group=group, from_beginning=True, auto_commit=False)
say("ready")
while True:
    records = consumer.poll(max_records=300, timeout_ms=200)
    done = {TopicPartition(r.topic, r.partition): r.offset + 1 for r in records}
    if done:
        consumer.commit(done)
        say_many([f"c {tp.partition} {offset}" for tp, offset in done.items()])
"""


def acked_commits(child: Child) -> dict[int, int]:
    """The highest offset per partition that `child` reported as committed."""
    out: dict[int, int] = {}
    for partition, offset in child.fields("c"):
        out[int(partition)] = max(out.get(int(partition), 0), int(offset))
    return out


def test_sigkill_loses_no_acknowledged_record(children: Children, store_url: str) -> None:
    with tidings.connect(store_url) as bus:
        bus.create_topic(TOPIC, partitions=PARTITIONS)
    producer = children.start("producer", PRODUCER, store_url, TOPIC)
    committer = children.start("committer", COMMITTER, store_url, TOPIC, "audit")
    producer.wait_for(
        lambda: len(producer.lines("a ")) >= KILL_AFTER_ACKS and len(committer.lines("c ")) >= 3,
        what=f"{KILL_AFTER_ACKS} acknowledged records and a few commits",
    )
    producer.kill()
    committer.kill()
    acks = [(int(p), int(o), v.encode()) for p, o, v in producer.fields("a")]
    commits = acked_commits(committer)
    assert len(acks) >= KILL_AFTER_ACKS and commits

    with tidings.connect(store_url) as bus:
        stored = read_dense(bus, TOPIC)
        found = {(p, r.offset): r.value or b"" for p, records in stored.items() for r in records}
        for partition, offset, value in acks:
            assert found.get((partition, offset)) == value, (
                f"acknowledged {value!r} at {TOPIC}[{partition}]@{offset} is not stored there"
            )
        assert max(Counter(found.values()).values()) == 1, "a record is stored twice"
        assert_whole_batches(found)

        group = bus.describe_group("audit")
        committed = {lag.partition: lag.committed for lag in group.partitions}
        ends = {s.partition: s.end_offset for s in bus.describe_topic(TOPIC).partitions}
        for partition, acked in commits.items():
            kept = committed[partition]
            assert kept is not None and acked <= kept <= ends[partition]

        # offsets are never reused: new records go after everything that survived
        for partition, end in ends.items():
            assert bus.publish(TOPIC, b"after", partition=partition).offset == end


def assert_whole_batches(found: dict[tuple[int, int], bytes]) -> None:
    """Check that each publish_many is stored whole, in a row, or not at all."""
    calls: dict[str, list[tuple[int, int, int]]] = defaultdict(list)
    for (partition, offset), value in found.items():
        if value.startswith(b"m:"):
            _, call, index, _ = value.decode().split(":")
            calls[call].append((partition, offset, int(index)))
    assert calls, "no publish_many reached the store before the kill"
    for call, placed in calls.items():
        placed.sort()
        assert [index for _, _, index in placed] == list(range(BATCH)), f"call {call} is partial"
        assert len({partition for partition, _, _ in placed}) == 1
        first = placed[0][1]
        assert [offset for _, offset, _ in placed] == list(range(first, first + BATCH))


def test_partitions_of_a_killed_member_resume_after_its_last_commit(
    children: Children, store_url: str
) -> None:
    with tidings.connect(store_url) as bus:
        bus.create_topic("jobs", partitions=4)
        for p in range(4):
            bus.publish_many("jobs", [b"%d" % i for i in range(2000)], partition=p)
        a = children.start("a", WORKER, store_url, "jobs", "workers", "a", 0.02)
        b = children.start("b", WORKER, store_url, "jobs", "workers", "b", 0.02)

        def owned_by(client_id: str) -> set[int]:
            group = bus.describe_group("workers")
            return {
                tp.partition
                for m in group.members
                if m.client_id == client_id
                for tp in m.assignment
            }

        def settled() -> bool:
            group = bus.describe_group("workers")
            return group.state == "Stable" and len(owned_by("a")) == len(owned_by("b")) == 2

        b.wait_for(settled, what="a and b to own two partitions each")
        theirs = owned_by("a")
        # a commit on each of a's partitions gives b a point to resume from
        a.wait_for(
            lambda: {int(p) for p, _ in a.fields("c")[-4:]} == theirs,
            what="a to commit on its partitions",
        )
        a.kill()
        killed = time.monotonic()
        left_by_a = acked_commits(a)
        # read before b can own (and commit on) a's partitions: a's last word on them
        group = bus.describe_group("workers")
        committed = {lag.partition: lag.committed for lag in group.partitions}
        b.wait_for(lambda: bool(b.lines("assigned 0,1,2,3")), what="b to take over every partition")
        takeover_s = time.monotonic() - killed
        taken_at = b.lines().index("assigned 0,1,2,3")

        def read_since_takeover() -> dict[int, list[int]]:
            out: dict[int, list[int]] = defaultdict(list)
            for line in b.lines()[taken_at:]:
                if line.startswith("r "):
                    _, partition, offset = line.split()
                    out[int(partition)].append(int(offset))
            return out

        b.wait_for(
            lambda: all(len(read_since_takeover()[p]) >= 10 for p in theirs),
            what="b to read from a's partitions",
        )
        for p in theirs:
            resumed_at = committed[p]
            assert resumed_at is not None and resumed_at >= left_by_a.get(p, 0)
            offsets = read_since_takeover()[p]
            # at-least-once without waste: exactly the records after the last commit
            assert offsets == list(range(resumed_at, resumed_at + len(offsets)))
        members = bus.describe_group("workers").members
        assert [m.client_id for m in members] == ["b"]
    print(f"b took over a's partitions {takeover_s:.2f}s after the kill (session timeout 1s)")
    assert takeover_s < 10, f"takeover took {takeover_s:.1f}s with a 1s session timeout"


def test_the_group_of_a_killed_sole_member_can_be_reset_after_its_session(
    children: Children, store_url: str
) -> None:
    with tidings.connect(store_url) as bus:
        bus.create_topic("jobs", partitions=2)
        bus.publish_many("jobs", [b"v"] * 10, partition=0)
        a = children.start("a", WORKER, store_url, "jobs", "workers", "a", 0.02)
        a.wait_for(lambda: bool(a.fields("c")), what="a to commit")
        a.kill()
        with pytest.raises(tidings.GroupNotEmptyError):
            bus.reset_offsets("workers", "jobs", to="earliest")  # its session still runs
        # as a Kafka coordinator does, the group expires the silent member (1 s session)
        deadline = time.monotonic() + 10
        while bus.describe_group("workers").members and time.monotonic() < deadline:
            time.sleep(0.05)
        assert bus.describe_group("workers").state == "Empty"
        assert bus.reset_offsets("workers", "jobs", to="earliest") == {
            tidings.TopicPartition("jobs", 0): 0,
            tidings.TopicPartition("jobs", 1): 0,
        }
        bus.delete_group("workers")
        assert bus.list_groups() == []
