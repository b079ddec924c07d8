"""SQLite's failures told apart: the real cases run on real disks in tests/integration
(test_disk_full, test_read_only); these are the ones no test disk can produce."""

from __future__ import annotations

import sqlite3
from pathlib import Path

from tidings.core.errors import DiskError, StorageFullError, StoreError
from tidings.engines.sqlite.failures import FULL_BELOW, free_bytes, store_error


def failure(message: str, code: int) -> sqlite3.OperationalError:
    """An error as SQLite raises it, with its extended result code."""
    error = sqlite3.OperationalError(message)
    error.sqlite_errorcode = code
    return error


def test_an_io_error_on_a_disk_with_room_is_a_disk_error_not_a_full_disk(
    tmp_path: Path,
) -> None:
    assert free_bytes(tmp_path / "bus.db") > FULL_BELOW
    error = store_error(
        failure("disk I/O error", sqlite3.SQLITE_IOERR_READ), tmp_path / "bus.db", "read"
    )
    assert type(error) is DiskError
    assert str(tmp_path / "bus.db") in str(error) and "check the disk" in str(error)
    assert not isinstance(error, StorageFullError)


def test_a_busy_store_keeps_sqlites_own_words(tmp_path: Path) -> None:
    error = store_error(
        failure("database is locked", sqlite3.SQLITE_BUSY), tmp_path / "bus.db", "append records"
    )
    assert type(error) is StoreError
    assert str(error) == f"cannot append records: {tmp_path / 'bus.db'}: database is locked"
