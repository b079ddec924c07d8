"""The raw limits of this machine, measured with plain sqlite3, struct and files.

Each function stores or reads `records` records of 100-byte values the way tidings
would at best: one packed blob per batch in SQLite (WAL, synchronous=FULL, one commit per
batch), one row per record, a file appended and fsynced per batch. Nothing here uses
tidings except its batch codec, where the figure is "read and decode a stored batch".
"""

from __future__ import annotations

import os
import sqlite3
import struct
import time
from array import array
from dataclasses import dataclass
from pathlib import Path

from bench.stats import VALUE_SIZE, Latency, median_of, value
from tidings.core import batch as codec

BATCH = 1000
"""Records per stored batch (per commit, per fsync) in the raw measurements."""

_HEADER = struct.Struct("<2sBBIIqq")  # the codec's batch header, parsed here by hand


@dataclass(frozen=True)
class RawLimits:
    """What plain sqlite3 and plain files achieve on this machine."""

    sqlite_blob_insert: float
    """records/s: one tidings-encoded blob per batch, one durable commit per batch."""
    sqlite_row_insert: float
    """records/s: one row per record, one durable commit per batch."""
    sqlite_read_decode: float
    """records/s: read every blob, decode into tidings Records with the codec."""
    sqlite_read_split: float
    """records/s: read every blob, split into value bytes with struct and slicing."""
    file_append_fsync: float
    """records/s: append a packed batch to a file, fsync after each."""
    fsync_100kb: Latency
    """write 100 KB and fsync it."""
    sqlite_commit: Latency
    """insert one 100-byte row and commit it durably (WAL, synchronous=FULL)."""


def _connect(path: Path) -> sqlite3.Connection:
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("PRAGMA journal_mode = WAL")
    conn.execute("PRAGMA synchronous = FULL")
    return conn


def _encode(values: list[bytes], first_ts: int) -> bytes:
    return codec.encode(values, None, [first_ts] * len(values)).data


def sqlite_blob_insert(path: Path, records: int, size: int = VALUE_SIZE) -> float:
    """Records/s inserting one encoded blob per BATCH records of `size` bytes, committing each."""
    conn = _connect(path)
    conn.execute(
        "CREATE TABLE IF NOT EXISTS batches "
        "(id INTEGER PRIMARY KEY, base_offset INTEGER, records INTEGER, data BLOB)"
    )
    values = [value(size)] * BATCH
    start = time.perf_counter()
    for base in range(0, records, BATCH):
        blob = _encode(values, time.time_ns() // 1_000_000)
        conn.execute("BEGIN IMMEDIATE")
        conn.execute(
            "INSERT INTO batches (base_offset, records, data) VALUES (?, ?, ?)",
            (base, BATCH, blob),
        )
        conn.execute("COMMIT")
    elapsed = time.perf_counter() - start
    conn.close()
    return (records // BATCH * BATCH) / elapsed


def sqlite_row_insert(path: Path, records: int) -> float:
    """Records/s inserting one row per record, BATCH rows per commit."""
    conn = _connect(path)
    conn.execute(
        "CREATE TABLE IF NOT EXISTS records (id INTEGER PRIMARY KEY, ts INTEGER, data BLOB)"
    )
    v = value()
    start = time.perf_counter()
    for _ in range(0, records, BATCH):
        ts = time.time_ns() // 1_000_000
        conn.execute("BEGIN IMMEDIATE")
        conn.executemany("INSERT INTO records (ts, data) VALUES (?, ?)", [(ts, v)] * BATCH)
        conn.execute("COMMIT")
    elapsed = time.perf_counter() - start
    conn.close()
    return (records // BATCH * BATCH) / elapsed


def sqlite_read_decode(path: Path) -> float:
    """Records/s reading every blob written by sqlite_blob_insert into tidings Records."""
    conn = sqlite3.connect(path)
    count = 0
    start = time.perf_counter()
    for base, data in conn.execute("SELECT base_offset, data FROM batches ORDER BY id"):
        count += len(codec.decode("t", 0, base, data))
    elapsed = time.perf_counter() - start
    conn.close()
    return count / elapsed


def sqlite_read_split(path: Path) -> float:
    """Records/s reading every blob and splitting it into values with struct and slices."""
    conn = sqlite3.connect(path)
    count = 0
    start = time.perf_counter()
    for (data,) in conn.execute("SELECT data FROM batches ORDER BY id"):
        n = _HEADER.unpack_from(data)[3]
        pos = _HEADER.size
        lengths = array("I")
        lengths.frombytes(data[pos : pos + 4 * n])
        pos += 4 * n
        values = []
        for length in lengths:
            values.append(data[pos : pos + length])
            pos += length
        count += len(values)
    elapsed = time.perf_counter() - start
    conn.close()
    return count / elapsed


def file_append_fsync(path: Path, records: int, size: int = VALUE_SIZE) -> float:
    """Records/s appending a packed batch per BATCH records of `size` bytes, fsyncing each."""
    values = [value(size)] * BATCH
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    try:
        start = time.perf_counter()
        for _ in range(0, records, BATCH):
            os.write(fd, _encode(values, time.time_ns() // 1_000_000))
            os.fsync(fd)
        elapsed = time.perf_counter() - start
    finally:
        os.close(fd)
    return (records // BATCH * BATCH) / elapsed


def fsync_latency(path: Path, samples: int, size: int = 100_000) -> Latency:
    """Write `size` bytes and fsync, `samples` times."""
    block = b"\0" * size
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    times = []
    try:
        start = time.perf_counter()
        for _ in range(samples):
            t = time.perf_counter()
            os.write(fd, block)
            os.fsync(fd)
            times.append(time.perf_counter() - t)
        elapsed = time.perf_counter() - start
    finally:
        os.close(fd)
    return Latency.of(times, elapsed)


def sqlite_commit_latency(path: Path, samples: int) -> Latency:
    """Insert one 100-byte row and commit it, `samples` times."""
    conn = _connect(path)
    conn.execute("CREATE TABLE IF NOT EXISTS one (id INTEGER PRIMARY KEY, data BLOB)")
    v = value()
    times = []
    start = time.perf_counter()
    for _ in range(samples):
        t = time.perf_counter()
        conn.execute("BEGIN IMMEDIATE")
        conn.execute("INSERT INTO one (data) VALUES (?)", (v,))
        conn.execute("COMMIT")
        times.append(time.perf_counter() - t)
    elapsed = time.perf_counter() - start
    conn.close()
    return Latency.of(times, elapsed)


def measure(directory: Path, records: int, samples: int, repeat: int) -> RawLimits:
    """Every raw limit, each throughput the median of `repeat` runs on fresh files."""
    directory.mkdir(parents=True, exist_ok=True)

    def fresh(name: str) -> Path:
        path = directory / name
        for suffix in ("", "-wal", "-shm"):
            Path(f"{path}{suffix}").unlink(missing_ok=True)
        return path

    blob_db = fresh("raw-blob.db")
    blob = median_of(
        repeat,
        lambda i: sqlite_blob_insert(blob_db if i == 0 else fresh(f"raw-blob-{i}.db"), records),
    )
    row_records = max(BATCH, records // 3)  # a row per record is slow; a third is enough
    row = median_of(repeat, lambda i: sqlite_row_insert(fresh(f"raw-row-{i}.db"), row_records))
    return RawLimits(
        sqlite_blob_insert=blob,
        sqlite_row_insert=row,
        sqlite_read_decode=median_of(repeat, lambda i: sqlite_read_decode(blob_db)),
        sqlite_read_split=median_of(repeat, lambda i: sqlite_read_split(blob_db)),
        file_append_fsync=median_of(
            repeat, lambda i: file_append_fsync(fresh(f"raw-append-{i}.log"), records)
        ),
        fsync_100kb=fsync_latency(fresh("raw-fsync.bin"), samples),
        sqlite_commit=sqlite_commit_latency(fresh("raw-commit.db"), samples),
    )
