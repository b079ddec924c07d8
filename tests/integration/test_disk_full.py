"""A store on a full disk: a typed error that says so, nothing lost, writes resume once
space is freed; never a store called corrupt that is not."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

import tidings
from tests.conformance.helpers import read_partition
from tests.disks import fill, small_disk
from tidings import StorageFullError

TIDINGS = str(Path(sys.executable).parent / "tidings")
RECORD_BYTES = 32 << 10
ENOUGH = 200
"""Records of RECORD_BYTES that more than fill a 2 MiB disk."""


def cli(url: str, *args: str) -> subprocess.CompletedProcess[str]:
    """Run the real `tidings` executable on `url` (another process than the test's)."""
    return subprocess.run(
        [TIDINGS, "--url", url, *args], capture_output=True, text=True, timeout=60, check=False
    )


def publish_until_full(bus: tidings.Bus, topic: str) -> tuple[list[bytes], StorageFullError]:
    """Publish records until the disk is full; the values acknowledged, and the error."""
    acknowledged: list[bytes] = []
    for _ in range(ENOUGH):
        value = os.urandom(RECORD_BYTES)
        try:
            bus.publish(topic, value)
        except StorageFullError as e:
            return acknowledged, e
        acknowledged.append(value)
    raise AssertionError(f"{ENOUGH} records of {RECORD_BYTES} bytes fitted on a 2 MiB disk")


def values(bus: tidings.Bus, topic: str) -> list[bytes | None]:
    """Every value of partition 0 of `topic`, oldest first."""
    return [r.value for r in read_partition(bus, topic, 0)]


def test_appends_on_a_full_disk_fail_as_full_and_succeed_once_space_is_freed(
    tmp_path: Path,
) -> None:
    with small_disk(tmp_path / "disk") as disk:
        ballast = disk / "ballast"
        ballast.write_bytes(b"\0" * (512 << 10))
        path = disk / "bus.db"
        with tidings.connect(f"sqlite://{path}") as bus:
            bus.create_topic("t")
            acknowledged, error = publish_until_full(bus, "t")
            assert acknowledged, "the disk was full before the first record"
            message = str(error)
            assert str(path) in message and "full" in message and "free" in message, message
            assert "rollback" not in message and "corrupt" not in message, message
            # The failed append left nothing behind, and every later write fails alike.
            assert values(bus, "t") == acknowledged
            with pytest.raises(StorageFullError):
                bus.publish("t", os.urandom(RECORD_BYTES))
            ballast.unlink()
            bus.publish("t", b"after")
            bus.create_topic("u")
            assert values(bus, "t") == [*acknowledged, b"after"]
        with tidings.connect(f"sqlite://{path}") as bus:
            assert values(bus, "t") == [*acknowledged, b"after"]
            assert {t.name for t in bus.list_topics()} == {"t", "u"}


def test_another_process_reads_a_store_whose_disk_is_full(tmp_path: Path) -> None:
    with small_disk(tmp_path / "disk") as disk:
        url = f"sqlite://{disk / 'bus.db'}"
        with tidings.connect(url) as bus:
            bus.create_topic("t")
            acknowledged, _ = publish_until_full(bus, "t")
            fill(disk)
            described = cli(url, "topics", "describe", "t", "--json")
            assert described.returncode == 0, described.stderr
            assert f'"end_offset": {len(acknowledged)}' in described.stdout
            # Twice the record that did not fit: the log reuses what that one had written.
            produced = cli(url, "produce", "t", "x" * (2 * RECORD_BYTES))
        assert produced.returncode == 1
        assert produced.stderr.startswith("error: ") and "is full" in produced.stderr
        assert "Traceback" not in produced.stderr and produced.stderr.count("\n") == 1


def test_a_store_opened_on_a_full_disk_is_called_full_not_corrupt(tmp_path: Path) -> None:
    with small_disk(tmp_path / "disk") as disk:
        path = disk / "bus.db"
        url = f"sqlite://{path}"
        with tidings.connect(url) as bus:
            bus.create_topic("t")
            bus.publish_many("t", [b"a", b"b", b"c"])
        ballast = fill(disk)
        with pytest.raises(StorageFullError) as caught:
            tidings.connect(url)
        assert str(path) in str(caught.value) and "free" in str(caught.value)
        listed = cli(url, "topics", "list")
        assert listed.returncode == 1
        assert "is full" in listed.stderr and "corrupt" not in listed.stderr, listed.stderr
        assert "backup" not in listed.stderr and "Traceback" not in listed.stderr
        ballast.unlink()
        with tidings.connect(url) as bus:
            assert values(bus, "t") == [b"a", b"b", b"c"]
            bus.publish("t", b"d")
