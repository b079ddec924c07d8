"""A store on a read-only mount: it opens for reading; a write gets a typed error."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

import tidings
from tests.conformance.helpers import read_partition
from tests.disks import remount, small_disk
from tidings import StoreReadOnlyError

TIDINGS = str(Path(sys.executable).parent / "tidings")


def cli(url: str, *args: str) -> subprocess.CompletedProcess[str]:
    """Run the real `tidings` executable on `url`."""
    return subprocess.run(
        [TIDINGS, "--url", url, *args], capture_output=True, text=True, timeout=60, check=False
    )


def make_store(path: Path) -> None:
    """A store with topic t: two partitions, three records, read by group g."""
    with tidings.connect(f"sqlite://{path}") as bus:
        bus.create_topic("t", partitions=2)
        bus.publish_many("t", [b"a", b"b"], partition=0)
        bus.publish("t", b"c", partition=1)
        with bus.consumer("t", group="g", from_beginning=True, auto_commit=False) as consumer:
            while consumer.poll(timeout_ms=500):
                consumer.commit()


def test_a_store_on_a_read_only_mount_opens_for_reading(tmp_path: Path) -> None:
    with small_disk(tmp_path / "disk") as disk:
        path = disk / "bus.db"
        make_store(path)
        files = sorted(p.name for p in disk.iterdir())
        remount(disk, "ro")
        with tidings.connect(f"sqlite://{path}") as bus:
            assert [t.name for t in bus.list_topics()] == ["t"]
            assert [p.end_offset for p in bus.describe_topic("t").partitions] == [2, 1]
            assert [r.value for r in read_partition(bus, "t", 0)] == [b"a", b"b"]
            for write in (
                lambda: bus.publish("t", b"d"),
                lambda: bus.create_topic("u"),
                lambda: bus.delete_topic("t"),
            ):
                with pytest.raises(StoreReadOnlyError) as caught:
                    write()
                assert str(path) in str(caught.value) and "read-only" in str(caught.value)
        remount(disk, "rw")
        assert sorted(p.name for p in disk.iterdir()) == files
        with tidings.connect(f"sqlite://{path}") as bus:
            assert [p.end_offset for p in bus.describe_topic("t").partitions] == [2, 1]
            bus.publish("t", b"d", partition=0)


def test_records_in_the_log_of_a_killed_process_are_read_on_a_read_only_mount(
    tmp_path: Path,
) -> None:
    with small_disk(tmp_path / "disk") as disk:
        path = disk / "bus.db"
        make_store(path)
        # A process that dies without closing leaves its last commits in bus.db-wal.
        killed = subprocess.run(
            [
                sys.executable,
                "-c",
                "import os, sys, tidings\n"
                "bus = tidings.connect(sys.argv[1])\n"
                "bus.publish('t', b'in the log', partition=1)\n"
                "os._exit(0)\n",
                f"sqlite://{path}",
            ],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        assert killed.returncode == 0, killed.stderr
        assert (disk / "bus.db-wal").stat().st_size > 0
        remount(disk, "ro")
        with tidings.connect(f"sqlite://{path}") as bus:
            assert [r.value for r in read_partition(bus, "t", 1)] == [b"c", b"in the log"]
            with pytest.raises(StoreReadOnlyError):
                bus.publish("t", b"d")


def test_the_cli_reads_a_read_only_store_and_refuses_writes_in_one_line(tmp_path: Path) -> None:
    with small_disk(tmp_path / "disk") as disk:
        path = disk / "bus.db"
        url = f"sqlite://{path}"
        make_store(path)
        remount(disk, "ro")
        listed = cli(url, "topics", "list")
        assert listed.returncode == 0 and "t" in listed.stdout.split(), listed.stderr
        described = cli(url, "topics", "describe", "t", "--json")
        assert described.returncode == 0 and '"end_offset": 2' in described.stdout
        consumed = cli(url, "consume", "t", "--from-beginning")
        assert consumed.returncode == 0, consumed.stderr
        assert sorted(consumed.stdout.split()) == ["a", "b", "c"]
        produced = cli(url, "produce", "t", "d")
        assert produced.returncode == 1
        assert produced.stderr.startswith("error: ") and "read-only" in produced.stderr
        assert produced.stderr.count("\n") == 1 and "Traceback" not in produced.stderr


def test_no_store_is_created_on_a_read_only_mount(tmp_path: Path) -> None:
    with small_disk(tmp_path / "disk") as disk:
        remount(disk, "ro")
        with pytest.raises(StoreReadOnlyError) as caught:
            tidings.connect(f"sqlite://{disk / 'bus.db'}")
        assert "read-only" in str(caught.value) and str(disk) in str(caught.value)
        assert list(disk.iterdir()) == []
