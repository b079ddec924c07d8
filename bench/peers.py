"""Peer queues doing the queue section's work through their own APIs, on files in `directory`.

- persist-queue's SQLiteAckQueue: `put(value)`, then `get()` + `ack(id=...)` per job;
  its defaults: WAL, synchronous FULL (an fsync per commit), a commit per call.
- litequeue's LiteQueue: `put(text)`, then `pop()` + `done(message_id)` per job;
  its defaults: WAL, synchronous NORMAL (no fsync per commit), a commit per call.

Both take one job per call (neither has a batch take) and both slow down as their backlog
grows, so they move far fewer jobs than tidings does; the table says how many.
"""

from __future__ import annotations

import shutil
import time
from dataclasses import dataclass
from pathlib import Path

from bench.stats import VALUE_SIZE, value


@dataclass(frozen=True)
class PeerResult:
    """One peer: put every job, then take and settle every job."""

    name: str
    put_call: str
    take_call: str
    durability: str
    jobs: int
    put_rate: float
    """records/s putting one job per call."""
    take_rate: float
    """records/s taking and settling one job per call."""


def persist_queue(directory: Path, jobs: int) -> PeerResult:
    """persist-queue's SQLiteAckQueue: put, then get + ack."""
    import persistqueue

    shutil.rmtree(directory, ignore_errors=True)
    queue = persistqueue.SQLiteAckQueue(str(directory), auto_resume=False)
    v = value()
    try:
        start = time.perf_counter()
        for _ in range(jobs):
            queue.put(v)
        put = time.perf_counter() - start
        start = time.perf_counter()
        for _ in range(jobs):
            item = queue.get(block=False, raw=True)  # raises persistqueue.Empty if dry
            queue.ack(id=item["pqid"])
        take = time.perf_counter() - start
    finally:
        queue.close()
    return PeerResult(
        "persist-queue SQLiteAckQueue",
        "put()",
        "get() + ack()",
        "fsync per commit",
        jobs,
        jobs / put,
        jobs / take,
    )


def litequeue(path: Path, jobs: int) -> PeerResult:
    """litequeue's LiteQueue: put, then pop + done."""
    from litequeue import LiteQueue  # type: ignore[import-untyped]

    for suffix in ("", "-wal", "-shm"):
        Path(f"{path}{suffix}").unlink(missing_ok=True)
    queue = LiteQueue(str(path))
    text = "v" * VALUE_SIZE  # litequeue stores text
    try:
        start = time.perf_counter()
        for _ in range(jobs):
            queue.put(text)
        put = time.perf_counter() - start
        start = time.perf_counter()
        for _ in range(jobs):
            message = queue.pop()
            if message is None:
                raise RuntimeError("litequeue ran dry before every job was taken")
            # litequeue 0.14 (the lock's from Python 3.12 on) asks for the claim too
            claim = getattr(message, "claim_id", None)
            queue.done(message.message_id, **({} if claim is None else {"claim_id": claim}))
        take = time.perf_counter() - start
    finally:
        queue.conn.close()
    return PeerResult(
        "litequeue",
        "put()",
        "pop() + done()",
        "no fsync per commit",
        jobs,
        jobs / put,
        jobs / take,
    )


def measure(directory: Path, jobs: int) -> list[PeerResult]:
    """Every peer on `jobs` jobs, each on its own files under `directory`."""
    directory.mkdir(parents=True, exist_ok=True)
    return [
        persist_queue(directory / "persist-queue", jobs),
        litequeue(directory / "litequeue.db", jobs),
    ]
