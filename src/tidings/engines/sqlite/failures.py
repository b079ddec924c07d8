"""SQLite's failures as tidings errors, told apart by SQLite's result code.

A full disk, a read-only store and a failing disk are not damage: calling them corrupt
would send a user to a backup for a store that is whole.
"""

from __future__ import annotations

import os
import sqlite3
from pathlib import Path

from tidings.core.errors import (
    DiskError,
    StorageFullError,
    StoreCorruptError,
    StoreError,
    StoreReadOnlyError,
)

FULL_BELOW = 1 << 20
"""Free bytes under which a disk counts as full: SQLite reports some writes that ran out
of space (growing its shared-memory file) as I/O errors, not as SQLITE_FULL."""


def store_error(error: sqlite3.Error, path: Path, action: str) -> StoreError:
    """The tidings error for SQLite's `error` while trying to `action` the store at `path`."""
    primary = getattr(error, "sqlite_errorcode", sqlite3.SQLITE_ERROR) & 0xFF
    if primary == sqlite3.SQLITE_FULL or (
        primary == sqlite3.SQLITE_IOERR and free_bytes(path) < FULL_BELOW
    ):
        return StorageFullError(str(path), action)
    if primary == sqlite3.SQLITE_READONLY or (
        primary == sqlite3.SQLITE_CANTOPEN and not os.access(path.parent, os.W_OK)
    ):
        return StoreReadOnlyError(str(path), action)
    if primary in (sqlite3.SQLITE_CORRUPT, sqlite3.SQLITE_NOTADB):
        return StoreCorruptError(
            f"{path} cannot be read as a tidings store ({error}); it was left untouched; "
            f"restore it from a backup or choose another path"
        )
    if primary == sqlite3.SQLITE_IOERR:
        return DiskError(str(path), action, f"failed ({error})")
    return StoreError(f"cannot {action}: {path}: {error}")


def free_bytes(path: Path) -> int:
    """Bytes free for writing on the disk that holds `path`."""
    try:
        stat = os.statvfs(path.parent)
    except OSError:
        return FULL_BELOW  # no answer: do not call the disk full on a guess
    return stat.f_bavail * stat.f_frsize
