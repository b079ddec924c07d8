"""Failures under a running consumer group: the group recovers, and no record whose
send was acknowledged is lost."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

from bench.postgres_server import free_port

import tidings
from tests.conformance.kafka_brokers import GROUP_TIMEOUTS, Broker, start_serve, start_tansu

DEADLINE_S = 60.0  # a bound on failing, not a speed: a loaded 2-core machine is slow


def read_until(
    consumer: tidings.Consumer, values: set[bytes], seen: set[bytes], *, committed: bool = False
) -> None:
    """Poll and commit until every one of `values` is in `seen` (and, with `committed`, the
    group's offsets of the consumer's partitions cover that many records)."""
    deadline = time.monotonic() + DEADLINE_S
    while not (values <= seen and (not committed or _committed(consumer) == len(values))):
        assert time.monotonic() < deadline, f"unread {sorted(values - seen)[:5]}, or uncommitted"
        seen.update(r.value or b"" for r in consumer.poll(timeout_ms=200))
        consumer.commit()


def _committed(consumer: tidings.Consumer) -> int:
    """Records the group's committed offsets cover, over the consumer's partitions."""
    return sum(consumer.committed(*consumer.assignment()).values())


def test_broker_killed_and_restarted_on_its_data(
    tmp_path: Path, brokers: Callable[[Broker], Broker]
) -> None:
    port = free_port()
    data = tmp_path / "data"
    first = brokers(start_serve(data, port=port))
    url = f"kafka://{first.wait()}?{GROUP_TIMEOUTS}"
    before = {b"before-%d" % i for i in range(200)}
    after = {b"after-%d" % i for i in range(200)}
    seen: set[bytes] = set()
    with tidings.connect(url) as bus:
        bus.create_topic("orders", partitions=3)
        bus.publish_many("orders", sorted(before), keys=sorted(before))  # acknowledged
        with bus.consumer("orders", group="g", from_beginning=True, auto_commit=False) as c:
            read_until(c, set(sorted(before)[:50]), seen)
            first.stop(signal.SIGKILL)
            assert c.poll(timeout_ms=300) is not None  # polling a dead broker does not raise
            brokers(start_serve(data, port=port)).wait()
            bus.publish_many("orders", sorted(after), keys=sorted(after))
            read_until(c, before | after, seen)
        assert bus.describe_topic("orders").records == 400


MEMBER = """
import sys, tidings
bus = tidings.connect(sys.argv[1])
consumer = bus.consumer("orders", group="g", from_beginning=True, auto_commit=False)
while True:
    records = consumer.poll(timeout_ms=100)
    for r in records:
        print(r.value.decode(), flush=True)
    if records:
        consumer.commit()
"""


def test_member_process_killed(brokers: Callable[[Broker], Broker]) -> None:
    # Tansu keeps its data in memory only: what is tested on it is a member, not the
    # broker, dying without a goodbye.
    url = f"kafka://{brokers(start_tansu()).wait()}?{GROUP_TIMEOUTS}"
    values = {b"v-%d" % i for i in range(300)}
    with tidings.connect(url) as bus:
        bus.create_topic("orders", partitions=4)
        bus.publish_many("orders", sorted(values), keys=sorted(values))
        member = subprocess.Popen(
            [sys.executable, "-c", MEMBER, url], stdout=subprocess.PIPE, text=True
        )
        assert member.stdout is not None
        try:
            by_member = [member.stdout.readline().strip().encode() for _ in range(20)]
        finally:
            member.send_signal(signal.SIGKILL)
            member.wait()
        # all it printed before dying: it prints a poll's records before committing them,
        # so what it committed is there even past the twenty lines waited for
        by_member += member.stdout.read().encode().split()
        member.stdout.close()
        seen = set(by_member)
        with bus.consumer("orders", group="g", from_beginning=True, auto_commit=False) as c:
            # what the member printed but had not committed comes again: at least once
            read_until(c, values, seen, committed=True)
            assert len(c.assignment()) == 4  # the dead member's partitions came back
