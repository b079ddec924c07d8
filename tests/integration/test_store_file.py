"""The store file: foreign files are refused untouched, a valid store keeps everything."""

from __future__ import annotations

import gc
import os
import sqlite3
import threading
from collections.abc import Callable
from pathlib import Path

import pytest

import tidings
from tests.conformance.helpers import read_partition
from tidings import NotATidingsStoreError, StoreError, TopicPartition

from .checks import read_dense


def refuse(path: Path, error: type[StoreError] = NotATidingsStoreError) -> str:
    """Connect to `path`, expecting `error`; its message."""
    with pytest.raises(error) as caught:
        tidings.connect(f"sqlite://{path}")
    message = str(caught.value)
    assert str(path) in message
    return message


def test_random_bytes_are_refused_untouched(tmp_path: Path) -> None:
    path = tmp_path / "blob.bin"
    content = os.urandom(64 << 10)
    path.write_bytes(content)
    assert "not a tidings store" in refuse(path)
    assert path.read_bytes() == content
    assert sorted(os.listdir(tmp_path)) == ["blob.bin"]


def test_a_text_file_is_refused_untouched(tmp_path: Path) -> None:
    path = tmp_path / "notes.txt"
    content = "groceries\n- milk\n- tea\n" * 50
    path.write_text(content)
    refuse(path)
    assert path.read_text() == content
    assert sorted(os.listdir(tmp_path)) == ["notes.txt"]


def other_application_db(path: Path) -> None:
    """An SQLite database in rollback-journal mode, as most applications keep one."""
    with sqlite3.connect(path) as db:
        db.execute("CREATE TABLE contacts (name TEXT, phone TEXT)")
        db.execute("INSERT INTO contacts VALUES ('Ada', '555-0100')")
    db.close()


def test_an_sqlite_database_of_another_application_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "contacts.db"
    other_application_db(path)
    assert "another application" in refuse(path)
    db = sqlite3.connect(path)
    assert db.execute("SELECT * FROM contacts").fetchall() == [("Ada", "555-0100")]
    assert db.execute("SELECT count(*) FROM sqlite_master").fetchone() == (1,)
    db.close()


def test_an_sqlite_database_of_another_application_stays_byte_for_byte(tmp_path: Path) -> None:
    path = tmp_path / "contacts.db"
    other_application_db(path)
    content = path.read_bytes()
    refuse(path)
    assert path.read_bytes() == content
    assert sorted(os.listdir(tmp_path)) == ["contacts.db"]


def test_an_empty_directory_holds_a_new_store(tmp_path: Path) -> None:
    # sqlite://DIR means the store file DIR/tidings.db, so a directory is a place, not a file
    where = tmp_path / "bus"
    where.mkdir()
    with tidings.connect(f"sqlite://{where}") as bus:
        bus.create_topic("t")
        bus.publish("t", b"kept")
    assert (where / "tidings.db").is_file()
    with tidings.connect(f"sqlite://{where}/") as bus:
        assert [r.value for r in read_partition(bus, "t", 0)] == [b"kept"]


def truncate_half(data: bytes) -> bytes:
    """Lose the second half of the file."""
    return data[: len(data) // 2]


def keep_header_only(data: bytes) -> bytes:
    """Keep only SQLite's 100-byte file header."""
    return data[:100]


def scramble_after_magic(data: bytes) -> bytes:
    """Keep the 'SQLite format 3' magic, replace the rest with noise of the same length."""
    return data[:16] + os.urandom(len(data) - 16)


@pytest.mark.parametrize("damage", [truncate_half, keep_header_only, scramble_after_magic])
def test_a_damaged_store_is_refused_untouched(
    tmp_path: Path, damage: Callable[[bytes], bytes]
) -> None:
    path = tmp_path / "bus.db"
    with tidings.connect(f"sqlite://{path}") as bus:
        bus.create_topic("t", partitions=2)
        for p in range(2):
            bus.publish_many("t", [os.urandom(200) for _ in range(3000)], partition=p)
    damaged = damage(path.read_bytes())
    path.write_bytes(damaged)
    refuse(path, StoreError)
    assert path.read_bytes() == damaged


def test_a_reopened_store_keeps_topics_records_and_commits(tmp_path: Path) -> None:
    url = f"sqlite://{tmp_path}/bus.db"
    with tidings.connect(url) as bus:
        bus.create_topic("orders", partitions=3, retention_ms=86_400_000)
        bus.create_topic("audit", cleanup_policy="compact")
        for i in range(30):
            bus.publish(
                "orders", b"v%d" % i, key=b"k%d" % i, headers=[("n", b"%d" % i)], timestamp=1000 + i
            )
        with bus.consumer("orders", group="billing", from_beginning=True) as consumer:
            seen = 0
            while seen < 30:
                batch = consumer.poll(timeout_ms=5000)
                assert batch, f"only {seen} of 30 records came back"
                seen += len(batch)
            consumer.commit()
            committed = consumer.committed()
        assert sum(committed.values()) == 30
        before = {
            p: [(r.key, r.value, r.headers, r.timestamp) for r in rs]
            for p, rs in read_dense(bus, "orders").items()
        }

    with tidings.connect(url) as bus:
        specs = {t.name: t for t in bus.list_topics()}
        assert sorted(specs) == ["audit", "orders"]
        assert specs["orders"].partitions == 3
        assert specs["orders"].config.retention_ms == 86_400_000
        assert specs["audit"].config.cleanup_policy == "compact"
        after = {
            p: [(r.key, r.value, r.headers, r.timestamp) for r in rs]
            for p, rs in read_dense(bus, "orders").items()
        }
        assert after == before and sum(map(len, after.values())) == 30
        group = bus.describe_group("billing")
        assert {
            TopicPartition("orders", lag.partition): lag.committed
            for lag in group.partitions
            if lag.committed is not None
        } == committed
        ends = {s.partition: s.end_offset for s in bus.describe_topic("orders").partitions}
        for p, end in ends.items():
            assert bus.publish("orders", b"new", partition=p).offset == end


def test_two_buses_in_one_process_share_one_store(tmp_path: Path) -> None:
    url = f"sqlite://{tmp_path}/bus.db"
    first = tidings.connect(url)
    second = tidings.connect(url)
    try:
        first.create_topic("t", partitions=2)
        tp = TopicPartition("t", 1)
        with second.consumer() as consumer:
            consumer.assign(tp)
            consumer.seek(tp, 0)
            assert first.publish("t", b"one", partition=1).offset == 0
            assert [r.value for r in consumer.poll(timeout_ms=5000)] == [b"one"]
            assert second.publish("t", b"two", partition=1).offset == 1
            assert first.publish("t", b"three", partition=1).offset == 2
            first.close()
            assert [r.value for r in consumer.poll(timeout_ms=5000)] == [b"two", b"three"]
            assert second.publish("t", b"four", partition=1).offset == 3
    finally:
        first.close()
        second.close()
    with tidings.connect(url) as bus:
        assert [r.value for r in read_partition(bus, "t", 1)] == [b"one", b"two", b"three", b"four"]


def test_short_lived_threads_leave_no_connections_behind(tmp_path: Path) -> None:
    url = f"sqlite://{tmp_path}/bus.db"
    growth = []
    with tidings.connect(url) as bus, tidings.connect(url) as other:
        for round_ in range(3):
            names = [f"r{round_}.t{i}" for i in range(60)]
            for name in names:  # unknown to `bus`: each thread looks its topic up
                other.create_topic(name)
            fds = len(os.listdir("/proc/self/fd"))
            threads = [threading.Thread(target=bus.publish, args=(n, b"v")) for n in names]
            for t in threads:
                t.start()
            for t in threads:
                t.join()
            gc.collect()
            growth.append(len(os.listdir("/proc/self/fd")) - fds)
    # SQLite keeps a closed connection's file open for reuse while others are open, so
    # the first round may grow; later rounds reuse those files instead of adding more
    assert growth[1] < 30 and growth[2] < 30, growth  # a kept connection per thread: 120


def test_create_false_opens_only_an_existing_store(tmp_path: Path) -> None:
    path = tmp_path / "data" / "bus.db"
    with pytest.raises(tidings.StoreNotFoundError) as caught:
        tidings.connect(f"sqlite://{path}?create=false")
    assert caught.value.path == str(path)
    assert os.listdir(tmp_path) == []
    with tidings.connect(f"sqlite://{path}") as bus:
        bus.create_topic("orders")
    with tidings.connect(f"sqlite://{path}?fsync=normal&create=false") as bus:
        assert [t.name for t in bus.list_topics()] == ["orders"]


def test_create_takes_only_true_or_false(tmp_path: Path) -> None:
    with pytest.raises(tidings.ConfigurationError, match="create must be true"):
        tidings.connect(f"sqlite://{tmp_path}/bus.db?create=no")
    assert os.listdir(tmp_path) == []


def store_without_append_times(path: Path) -> None:
    """Make `path` a store as tidings wrote them before batches had append times."""
    with tidings.connect(f"sqlite://{path}") as bus:
        bus.create_topic("orders", retention_ms=3_600_000)
        bus.publish("orders", b"early", timestamp=1_000)
    conn = sqlite3.connect(path)
    try:
        conn.execute("DROP INDEX batches_by_offset")
        conn.execute("ALTER TABLE batches DROP COLUMN appended_ms")
        conn.execute(
            "CREATE UNIQUE INDEX batches_by_offset ON batches "
            "(topic_id, partition, last_offset, base_offset, max_timestamp, size)"
        )
        conn.commit()
    finally:
        conn.close()


def test_a_store_from_before_append_times_keeps_its_records_and_retention(
    tmp_path: Path,
) -> None:
    path = tmp_path / "bus.db"
    store_without_append_times(path)
    with tidings.connect(f"sqlite://{path}") as bus:
        bus.publish("orders", b"backfill", timestamp=2_000)
        assert [r.value for r in read_partition(bus, "orders")] == [b"early", b"backfill"]
        bus.maintain()
        # the batch stored before counts as appended long ago; the new one is spared
        assert [r.value for r in read_partition(bus, "orders")] == [b"backfill"]
    conn = sqlite3.connect(path)
    try:
        index = conn.execute("PRAGMA index_info(batches_by_offset)").fetchall()
    finally:
        conn.close()
    assert "appended_ms" in [column for _, _, column in index]
