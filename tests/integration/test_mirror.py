"""`tidings mirror` and tidings.mirror: records, group offsets, resuming without duplicates."""

from __future__ import annotations

import asyncio
import json
import os
import re
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from bench import nats_server

import tidings
from tests.conformance.kafka_brokers import GROUP_TIMEOUTS, STARTERS
from tidings import TopicPartition
from tidings.mirror import PROGRESS_TOPIC, Mirror, MirrorError, PartitionProgress

TIDINGS = str(Path(sys.executable).parent / "tidings")


def fill(url: str, count: int, partitions: int = 2) -> None:
    """`count` keyed records with headers and set timestamps on topic 'orders'."""
    with tidings.connect(url) as bus:
        bus.create_topic("orders", partitions=partitions, retention_ms=3_600_000)
        with bus.producer() as producer:
            for i in range(count):
                producer.send(
                    "orders",
                    f"v{i}".encode(),
                    key=f"k{i % 7}".encode(),
                    headers={"n": str(i).encode()},
                    timestamp=1_700_000_000_000 + i,
                )


def contents(url: str, topic: str = "orders") -> dict[int, list[tuple[object, ...]]]:
    """Every record of `topic` per partition, without offsets."""
    with tidings.connect(url) as bus:
        out: dict[int, list[tuple[object, ...]]] = {}
        for p in bus.describe_topic(topic).partitions:
            consumer = bus.consumer()
            tp = TopicPartition(topic, p.partition)
            consumer.assign(tp)
            consumer.seek(tp, "earliest")
            rows: list[tuple[object, ...]] = []
            while consumer.position(tp) < p.end_offset:
                rows += [(r.key, r.value, r.headers, r.timestamp) for r in consumer.poll()]
            consumer.close()
            out[p.partition] = rows
        return out


def run_mirror(src: str, dst: str, **options: object) -> tidings.mirror.MirrorReport:
    """One run of the mirror, to the end of what the source has."""

    async def main() -> tidings.mirror.MirrorReport:
        a = await tidings.connect_async(src)
        b = await tidings.connect_async(dst)
        try:
            return await Mirror(a, b).run(["orders"], **options)  # type: ignore[arg-type]
        finally:
            await b.close()
            await a.close()

    return asyncio.run(main())


@pytest.fixture
def urls(tmp_path: Path) -> tuple[str, str]:
    """A source and a destination store."""
    return f"sqlite://{tmp_path}/src.db", f"sqlite://{tmp_path}/dst.db"


def test_mirror_copies_records_partitions_and_settings(urls: tuple[str, str]) -> None:
    src, dst = urls
    fill(src, 300)
    report = run_mirror(src, dst)
    assert report.copied == {"orders": 300}
    assert contents(dst) == contents(src)
    with tidings.connect(dst) as bus:
        spec = bus.describe_topic("orders").spec
    assert (spec.partitions, spec.config.retention_ms) == (2, 3_600_000)


def test_a_second_run_copies_only_what_is_new(urls: tuple[str, str]) -> None:
    src, dst = urls
    fill(src, 100)
    run_mirror(src, dst)
    with tidings.connect(src) as bus:
        bus.publish("orders", b"later", partition=1)
    assert run_mirror(src, dst).copied == {"orders": 1}
    assert contents(dst) == contents(src)


def test_records_copied_after_the_last_saved_progress_are_not_copied_again(
    urls: tuple[str, str],
) -> None:
    src, dst = urls
    fill(src, 50, partitions=1)
    run_mirror(src, dst)
    # as if the mirror died after storing 20 more records but before saving its progress
    with tidings.connect(src) as bus:
        for i in range(30):
            bus.publish("orders", f"new{i}".encode())
    with tidings.connect(dst) as bus:
        for i in range(20):
            bus.publish("orders", f"new{i}".encode())
    report = run_mirror(src, dst)
    assert report.copied == {"orders": 10}
    assert [r[1] for r in contents(dst)[0]] == [r[1] for r in contents(src)[0]]


def test_group_offsets_are_translated_through_a_compacted_source(urls: tuple[str, str]) -> None:
    src, dst = urls
    with tidings.connect(src) as bus:
        bus.create_topic("orders", cleanup_policy="compact", min_compaction_lag_ms=0)
        for i in range(40):
            bus.publish("orders", f"v{i}".encode(), key=f"k{i % 4}".encode())
        bus.maintain()  # compaction leaves gaps in the source offsets
        kept = [r.offset for r in _read(bus)]
        assert len(kept) < 40
        committed = kept[len(kept) // 2]
        bus.reset_offsets("readers", "orders", offset=committed)
    report = run_mirror(src, dst)
    with tidings.connect(dst) as bus:
        dst_offsets = [r.offset for r in _read(bus)]
    expected = dst_offsets[kept.index(committed)]
    assert report.groups == {"readers": {TopicPartition("orders", 0): expected}}
    with tidings.connect(dst) as bus:
        lag = bus.describe_group("readers").partitions[0]
    assert lag.committed == expected


def _read(bus: tidings.Bus) -> list[tidings.Record]:
    consumer = bus.consumer()
    tp = TopicPartition("orders", 0)
    consumer.assign(tp)
    consumer.seek(tp, "earliest")
    out = []
    while batch := consumer.poll(timeout_ms=200):
        out += batch
    consumer.close()
    return out


def test_translation_never_maps_past_the_exact_offset_once_ranges_merge() -> None:
    progress = PartitionProgress(0, 0)
    exact = {}
    dst = 0
    for src in range(0, 6000, 2):  # a gap after every record: one range each
        progress.add(src, dst)
        exact[src] = dst
        dst += 1
    progress.next_offset, progress.dst_end = 6000, dst
    assert len(progress.ranges) <= 1000
    for committed in range(0, 6000, 7):
        wanted = exact.get(committed, exact.get(committed + 1, dst))
        assert progress.translate(committed) <= wanted


def test_unknown_topic_and_truncated_destination_are_clear_errors(urls: tuple[str, str]) -> None:
    src, dst = urls
    fill(src, 10, partitions=1)
    with pytest.raises(MirrorError, match="not on the source"):
        _mirror_topics(src, dst, ["nope"])
    run_mirror(src, dst)
    with tidings.connect(dst) as bus:
        bus.delete_topic("orders")
    with pytest.raises(MirrorError, match=PROGRESS_TOPIC):
        run_mirror(src, dst)


def _mirror_topics(src: str, dst: str, topics: list[str]) -> None:
    async def main() -> None:
        a = await tidings.connect_async(src)
        b = await tidings.connect_async(dst)
        try:
            await Mirror(a, b).run(topics)
        finally:
            await b.close()
            await a.close()

    asyncio.run(main())


@pytest.mark.slow
def test_cli_mirror_killed_and_run_again_copies_every_record_once(urls: tuple[str, str]) -> None:
    src, dst = urls
    fill(src, 60_000, partitions=1)
    command = [TIDINGS, "mirror", src, dst, "--topics", "orders"]
    process = subprocess.Popen(command, stderr=subprocess.PIPE, text=True)
    try:
        assert process.stderr is not None
        line = process.stderr.readline()  # progress: it is copying
        assert line.startswith("orders  0/60,000 records"), line
    finally:
        os.kill(process.pid, signal.SIGKILL)
        process.wait()
    with tidings.connect(dst) as bus:
        partway = bus.describe_topic("orders").records
    assert partway < 60_000
    done = subprocess.run(command, capture_output=True, text=True, timeout=120, check=True)
    assert "orders:" in done.stdout
    assert contents(dst) == contents(src)


def test_cli_progress_off_a_terminal_is_plain_lines(urls: tuple[str, str]) -> None:
    src, dst = urls
    fill(src, 300)
    command = [TIDINGS, "mirror", src, dst, "--topics", "orders"]
    done = subprocess.run(command, capture_output=True, text=True, timeout=120, check=True)
    assert "\r" not in done.stderr
    lines = done.stderr.splitlines()
    assert lines[0] == "orders  0/300 records  0:00 elapsed"
    assert re.fullmatch(r"orders  300/300 records(  [\d,]+/s)?  done in \d+:\d\d", lines[-1])
    assert done.stdout == "orders: 300 records copied\n"


def committed(url: str, group: str) -> dict[int, int | None]:
    """The group's committed offset per partition of 'orders'."""
    with tidings.connect(url) as bus:
        return {p.partition: p.committed for p in bus.describe_group(group).partitions}


def test_a_group_that_read_further_on_the_destination_keeps_its_offsets(
    urls: tuple[str, str],
) -> None:
    src, dst = urls
    fill(src, 100)
    with tidings.connect(src) as bus:
        bus.reset_offsets("billing", "orders", offset=10)
    run_mirror(src, dst)
    with tidings.connect(dst) as bus:  # billing goes on at the destination, on partition 0
        bus.reset_offsets("billing", "orders", offset=40, partitions=[0])
    with tidings.connect(src) as bus:  # and, meanwhile, at the source on both
        bus.reset_offsets("billing", "orders", offset=25)
    report = run_mirror(src, dst)
    assert committed(dst, "billing") == {0: 40, 1: 25}  # never back, forwards where behind
    assert report.groups == {"billing": {TopicPartition("orders", 1): 25}}
    assert "orders[0] at 40" in report.skipped_groups["billing"]


def test_a_group_active_on_the_destination_keeps_its_offsets(urls: tuple[str, str]) -> None:
    src, dst = urls
    fill(src, 100)
    with tidings.connect(src) as bus:
        bus.reset_offsets("billing", "orders", offset=10)
    run_mirror(src, dst)
    with tidings.connect(src) as bus:
        bus.reset_offsets("billing", "orders", offset=30)
    with (
        tidings.connect(dst) as bus,
        bus.consumer("orders", group="billing", auto_commit=False) as member,
    ):
        assert member.poll(max_records=1, timeout_ms=5000)  # joined: the group is active
        report = run_mirror(src, dst)
    assert "active on the destination" in report.skipped_groups["billing"]
    assert report.groups == {}
    assert committed(dst, "billing") == {0: 10, 1: 10}


@pytest.fixture(params=["nats", "kafka-serve"])
def cluster_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """An empty NATS JetStream server or Kafka-compatible broker, stopped after the test.

    Not Tansu: the mirror needs a partition's end offset and admin offset commits, where
    Tansu departs from Kafka (tests/conformance/helpers.py: tansu_latest_offsets and
    tansu_group_admin)."""
    if request.param == "nats":
        with nats_server.running(tmp_path / "nats") as server:
            yield server.url
        return
    broker = STARTERS[request.param]()
    try:
        yield f"kafka://{broker.wait()}?{GROUP_TIMEOUTS}"
    finally:
        broker.stop()


def mirror_json(src: str, dst: str) -> dict[str, Any]:
    """What `tidings mirror SRC DST --topics orders --json` reports."""
    command = [TIDINGS, "mirror", src, dst, "--topics", "orders", "--json"]
    done = subprocess.run(command, capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 0, done.stderr
    report: dict[str, Any] = json.loads(done.stdout)
    return report


def test_mirroring_again_never_rewinds_a_group_on_the_cluster(
    tmp_path: Path, cluster_url: str
) -> None:
    laptop = f"sqlite://{tmp_path}/laptop.db"
    fill(laptop, 100)
    with tidings.connect(laptop) as bus:
        bus.reset_offsets("billing", "orders", offset=10)  # billing handled 20 orders
    first = mirror_json(laptop, cluster_url)
    assert first["copied"] == {"orders": 100}
    assert first["skipped_groups"] == {}
    with (
        tidings.connect(cluster_url) as bus,
        bus.consumer("orders", group="billing", from_beginning=True) as billing,
    ):
        billed = 0
        while records := billing.poll(timeout_ms=15_000 if not billed else 2_000):
            billed += len(records)
            billing.commit()
    assert billed == 80  # the orders billing had not handled on the laptop
    caught_up = committed(cluster_url, "billing")

    again = mirror_json(laptop, cluster_url)
    assert again["copied"] == {"orders": 0}
    assert committed(cluster_url, "billing") == caught_up  # not back to 10: nothing twice
    assert "billing" in again["skipped_groups"]
    with tidings.connect(cluster_url) as bus:
        assert bus.describe_group("billing").lag == 0
