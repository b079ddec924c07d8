"""A store's files are its owner's alone, unless its URL says `mode=`."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

import tidings
from tidings.core.errors import ConfigurationError


def modes(directory: Path) -> dict[str, int]:
    """The permission bits of a directory, its files, and those of its -notify directory."""
    paths = [directory, *directory.iterdir(), *directory.glob("*-notify/*")]
    return {p.name: stat.S_IMODE(os.stat(p).st_mode) for p in paths}


def modes_in_use(url: str, directory: Path) -> dict[str, int]:
    """The modes of a store's files while two buses write and read it (WAL files exist)."""
    with tidings.connect(url) as bus, tidings.connect(url) as other:
        bus.create_topic("t")
        bus.publish("t", b"x")
        assert other.describe_topic("t").records == 1
        return modes(directory)


def test_a_new_store_is_0600_in_a_0700_directory(tmp_path: Path) -> None:
    found = modes_in_use(f"sqlite://{tmp_path}/store/bus.db", tmp_path / "store")
    assert found.pop("store") == 0o700
    assert found.pop("bus.db-notify") == 0o700
    assert {"bus.db", "bus.db-wal", "bus.db-shm"} <= set(found)
    assert set(found.values()) == {0o600}, found


def test_mode_in_the_url_shares_the_store_with_a_group(tmp_path: Path) -> None:
    old = os.umask(0o022)
    try:
        found = modes_in_use(f"sqlite://{tmp_path}/shared/bus.db?mode=0640", tmp_path / "shared")
    finally:
        os.umask(old)
    assert found.pop("shared") == 0o750
    assert found.pop("bus.db-notify") == 0o750
    assert {"bus.db", "bus.db-wal", "bus.db-shm"} <= set(found)
    assert set(found.values()) == {0o640}, found


@pytest.mark.parametrize("mode", ["rw", "0400", "1777", "-1", "600x"])
def test_a_bad_mode_is_refused_and_nothing_is_created(tmp_path: Path, mode: str) -> None:
    with pytest.raises(ConfigurationError, match="mode must be octal permissions"):
        tidings.connect(f"sqlite://{tmp_path}/bad/bus.db?mode={mode}")
    assert not (tmp_path / "bad").exists()
