"""Queues: tidings share groups on sqlite:// (default fsync) beside peer queues, in one run.

Every figure sends 100-byte jobs, then takes each one and settles it:

- tidings: `bus.publish_many()` (and `queue.send()` one at a time) to store the jobs, then
  `queue.receive(max_records=500)` + `job.ack()` for every job (the library batches the
  acks), `queue.flush()` at the end; with one consumer in this process, one consumer
  process, and several consumer processes on the same store;
- the drain rate at the front of a small and of a large backlog;
- the peers (bench/peers.py) doing the same work through their own APIs, one job per
  call, on far fewer jobs: they slow down as their backlog grows;
- the raw floor of this design in plain sqlite3: read and decode the batches, plus one
  small write transaction to take 500 jobs and one to settle them.
"""

from __future__ import annotations

import multiprocessing
import queue as queue_module
import sqlite3
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import tidings
from bench import peers
from bench.stats import value
from tidings.core import batch as codec

TOPIC = "jobs"
RECEIVE = 500
"""max_records of every receive()."""
IDLE_MS = 250
"""A consumer process stops after a receive() that found nothing for this long."""
TARGET = 200_000
"""records/s for send + receive + ack with batched acks and one consumer (the issue)."""
PROCESSES = 4

Cells = tuple[str, str, str, str, str, str]
"""measurement, result, raw limit (or the tidings figure a peer is compared with), ratio,
target, met: the columns of bench/__main__.py's table."""


@dataclass(frozen=True)
class Sizes:
    """How many jobs each measurement moves."""

    jobs: int = 100_000
    """tidings: the backlog published and drained (in this process and by processes)."""
    send_one: int = 2_000
    """tidings: queue.send() calls, one job each (a durable round trip per job)."""
    backlogs: tuple[int, int] = (10_000, 1_000_000)
    """the small and the large backlog in front of which the drain rate is measured."""
    drain: int = 10_000
    """jobs drained at the front of each backlog."""
    peer_jobs: int = 10_000
    """jobs per peer: put, then take + settle."""
    repeat: int = 3
    """runs per tidings in-process figure (median)."""
    backlog_repeat: int = 5
    """groups draining the front of each backlog (median): each drain is short."""

    @classmethod
    def quick(cls) -> Sizes:
        """Tiny sizes: a smoke test, not a figure."""
        return cls(
            jobs=10_000,
            send_one=100,
            backlogs=(10_000, 100_000),
            drain=5_000,
            peer_jobs=1_000,
            repeat=1,
            backlog_repeat=3,
        )


@dataclass(frozen=True)
class Drain:
    """One run storing `jobs` jobs and taking + acking all of them."""

    jobs: int
    publish_s: float
    """seconds of bus.publish_many() for the whole backlog."""
    drain_s: float
    """seconds from the first receive() to the end of the last flush()."""
    settle_calls: int = -1
    """separate acknowledge() calls the library made (-1: not counted)."""

    @property
    def publish_rate(self) -> float:
        """records/s storing the backlog."""
        return self.jobs / self.publish_s

    @property
    def drain_rate(self) -> float:
        """records/s of receive + ack."""
        return self.jobs / self.drain_s

    @property
    def end_to_end(self) -> float:
        """records/s of publish_many + receive + ack, one after the other."""
        return self.jobs / (self.publish_s + self.drain_s)


@dataclass(frozen=True)
class Processes:
    """Consumer processes draining one backlog together."""

    processes: int
    jobs: int
    delivered: int
    """jobs handed out in all (more than `jobs` would mean a job delivered twice)."""
    seconds: float
    per_process: list[int]

    @property
    def rate(self) -> float:
        """records/s over all processes, start to the last flush."""
        return self.jobs / self.seconds


@dataclass(frozen=True)
class QueueResults:
    """The queue section of the benchmark."""

    sizes: Sizes
    send_one: float
    """records/s: queue.send() in a loop, each durable on return."""
    runs: list[Drain]
    """in-process runs: publish_many, then one consumer takes + acks every job."""
    processes: dict[int, Processes]
    """by number of consumer processes."""
    backlog: dict[int, float]
    """records/s draining `sizes.drain` jobs at the front of a backlog of that many."""
    peers: list[peers.PeerResult]
    raw_floor: float
    """records/s: sqlite3 read + decode + two write transactions per RECEIVE records."""
    notes: list[str] = field(default_factory=list)

    def median(self, attribute: str) -> float:
        """The median of a Drain property over the in-process runs."""
        return float(statistics.median(getattr(r, attribute) for r in self.runs))


# -- tidings ------------------------------------------------------------------------------


def _url(path: Path) -> str:
    for suffix in ("", "-wal", "-shm"):
        Path(f"{path}{suffix}").unlink(missing_ok=True)
    return f"sqlite://{path}"


def drain(queue: tidings.Queue, jobs: int) -> float:
    """Seconds to receive + ack `jobs` jobs (every ack sent when it returns)."""
    seen = 0
    start = time.perf_counter()
    while seen < jobs:
        batch = queue.receive(max_records=RECEIVE, timeout_ms=1000)
        if not batch:
            raise RuntimeError(f"queue ran dry after {seen:,} of {jobs:,} jobs")
        for job in batch:
            job.ack()
        seen += len(batch)
    queue.flush()
    return time.perf_counter() - start


def _count_settles(queue: tidings.Queue) -> Callable[[], int]:
    """Count the library's separate acknowledge() calls (a store transaction each, per
    partition); -1 when this version of the library cannot be counted that way."""
    inner: Any = getattr(queue.aio, "_inner", None)
    original = getattr(inner, "acknowledge", None)
    if original is None:
        return lambda: -1
    calls = [0]

    async def counted(acks: Any) -> Any:
        calls[0] += 1
        return await original(acks)

    inner.acknowledge = counted
    return lambda: calls[0]


def drain_run(path: Path, jobs: int) -> Drain:
    """A fresh store: publish_many `jobs` jobs, then drain them with one consumer."""
    bus = tidings.connect(_url(path))
    try:
        queue = bus.queue(TOPIC, group="workers")
        settles = _count_settles(queue)
        values = [value()] * jobs
        start = time.perf_counter()
        bus.publish_many(TOPIC, values)
        published = time.perf_counter() - start
        drained = drain(queue, jobs)
        queue.close()
        return Drain(jobs, published, drained, settles())
    finally:
        bus.close()


def send_one(path: Path, jobs: int) -> float:
    """records/s of queue.send() one job at a time."""
    bus = tidings.connect(_url(path))
    try:
        queue = bus.queue(TOPIC, group="workers")
        v = value()
        queue.send(v)  # warm up: the shared producer
        start = time.perf_counter()
        for _ in range(jobs):
            queue.send(v)
        elapsed = time.perf_counter() - start
        queue.close()
        return jobs / elapsed
    finally:
        bus.close()


def backlog_rate(path: Path, backlog: int, jobs: int, repeat: int) -> float:
    """records/s draining `jobs` jobs at the front of `backlog` (median of `repeat` groups)."""
    bus = tidings.connect(_url(path))
    try:
        bus.create_topic(TOPIC)
        chunk = [value()] * min(backlog, 100_000)
        for first in range(0, backlog, len(chunk)):
            bus.publish_many(TOPIC, chunk[: backlog - first])
        rates = []
        for i in range(max(1, repeat)):
            queue = bus.queue(TOPIC, group=f"front-{i}")  # each group starts at the front
            rates.append(jobs / drain(queue, jobs))
            queue.close()
        return statistics.median(rates)
    finally:
        bus.close()


def _consumer_process(url: str, group: str, ready: Any, go: Any, out: Any) -> None:
    """A consumer process: receive + ack until the queue stays empty for IDLE_MS."""
    bus = tidings.connect(url)
    try:
        queue = bus.queue(TOPIC, group=group)
        ready.put(None)
        go.wait()
        start = end = time.monotonic()
        seen = 0
        while True:
            batch = queue.receive(max_records=RECEIVE, timeout_ms=IDLE_MS)
            if not batch:
                break
            for job in batch:
                job.ack()
            queue.flush()  # what the next receive() does first; here it dates the last ack
            seen += len(batch)
            end = time.monotonic()
        queue.close()
        out.put((seen, start, end))
    finally:
        bus.close()


def _collect(source: Any, count: int, workers: list[Any], timeout_s: float) -> list[Any]:
    """`count` items from a multiprocessing queue; fail at once if a worker died."""
    items: list[Any] = []
    deadline = time.monotonic() + timeout_s
    while len(items) < count:
        try:
            items.append(source.get(timeout=0.2))
        except queue_module.Empty:
            dead = [w.exitcode for w in workers if w.exitcode not in (None, 0)]
            if dead:
                raise RuntimeError(f"consumer processes failed with exit codes {dead}") from None
            if time.monotonic() > deadline:
                raise TimeoutError(f"consumer processes sent {len(items)} of {count}") from None
    return items


def processes_run(path: Path, jobs: int, processes: int) -> Processes:
    """`processes` consumer processes on one store draining `jobs` jobs together."""
    url = _url(path)
    bus = tidings.connect(url)
    try:
        bus.create_topic(TOPIC)
        bus.publish_many(TOPIC, [value()] * jobs)
    finally:
        bus.close()
    context = multiprocessing.get_context("spawn")  # no inherited threads or connections
    ready, go, out = context.Queue(), context.Event(), context.Queue()
    workers = [
        context.Process(target=_consumer_process, args=(url, "workers", ready, go, out))
        for _ in range(processes)
    ]
    for w in workers:
        w.start()
    try:
        _collect(ready, processes, workers, 120)  # every process has opened the store
        start = time.monotonic()
        go.set()
        reports = _collect(out, processes, workers, 300)
    finally:
        for w in workers:
            w.join(timeout=30)
            if w.is_alive():
                w.kill()
    end = max(r[2] for r in reports)
    counts = sorted((r[0] for r in reports), reverse=True)
    return Processes(processes, jobs, sum(counts), end - start, counts)


# -- the raw floor ------------------------------------------------------------------------


def raw_floor(path: Path, jobs: int) -> float:
    """records/s of the least a log-backed queue does in Python with plain sqlite3.

    Read the stored batches (1000 records per blob, as written by a producer) and decode
    them with the tidings codec; per RECEIVE records, one write transaction taking them
    (a small state row rewritten) and one settling them; WAL, synchronous=NORMAL as
    tidings' share windows use. No Job objects, no ack bookkeeping, no threads.
    """
    for suffix in ("", "-wal", "-shm"):
        Path(f"{path}{suffix}").unlink(missing_ok=True)
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("PRAGMA journal_mode = WAL")
    conn.execute("PRAGMA synchronous = NORMAL")
    conn.execute("CREATE TABLE batches (last_offset INTEGER PRIMARY KEY, base INTEGER, data BLOB)")
    conn.execute("CREATE TABLE state (id INTEGER PRIMARY KEY, window TEXT)")
    batch = 1000
    blob = codec.encode([value()] * batch, None, [time.time_ns() // 1_000_000] * batch).data
    conn.execute("BEGIN")
    conn.executemany(
        "INSERT INTO batches VALUES (?, ?, ?)",
        [(base + batch - 1, base, blob) for base in range(0, jobs, batch)],
    )
    conn.execute("COMMIT")
    taken = 0
    start = time.perf_counter()
    while taken < jobs:
        row = conn.execute(
            "SELECT base, data FROM batches WHERE last_offset >= ? ORDER BY last_offset LIMIT 1",
            (taken,),
        ).fetchone()
        records = [r for r in codec.decode(TOPIC, 0, row[0], row[1]) if r.offset >= taken]
        records = records[:RECEIVE]
        for state in ("taken", "settled"):
            conn.execute("BEGIN IMMEDIATE")
            conn.execute("SELECT window FROM state WHERE id = 0").fetchone()
            conn.execute(
                "INSERT OR REPLACE INTO state VALUES (0, ?)", (f"{state} {taken}-{len(records)}",)
            )
            conn.execute("COMMIT")
        taken += len(records)
    elapsed = time.perf_counter() - start
    conn.close()
    return taken / elapsed


# -- everything ---------------------------------------------------------------------------


def measure(directory: Path, sizes: Sizes) -> QueueResults:
    """Every queue measurement, tidings and peers, in this run."""
    directory.mkdir(parents=True, exist_ok=True)
    runs = [drain_run(directory / f"drain-{i}.db", sizes.jobs) for i in range(sizes.repeat)]
    one = send_one(directory / "send.db", sizes.send_one)
    procs = {n: processes_run(directory / f"procs-{n}.db", sizes.jobs, n) for n in (1, PROCESSES)}
    backlog = {
        b: backlog_rate(directory / f"backlog-{b}.db", b, min(b, sizes.drain), sizes.backlog_repeat)
        for b in sizes.backlogs
    }
    peer_results = peers.measure(directory / "peers", sizes.peer_jobs)
    floor = raw_floor(directory / "raw-queue.db", sizes.jobs)
    notes = [
        f"{p.processes} process(es) delivered {p.delivered:,} jobs for {p.jobs:,}"
        for p in procs.values()
        if p.delivered != p.jobs
    ]
    return QueueResults(sizes, one, runs, procs, backlog, peer_results, floor, notes)


def _rate(x: float) -> str:
    return f"{x:,.0f} rec/s"


def _met(x: float, target: float) -> str:
    return "yes" if x >= target else "NO"


def rows(r: QueueResults) -> list[Cells]:
    """The queue section's table rows."""
    s = r.sizes
    floor = f"sqlite read+decode+2 txn/{RECEIVE} {_rate(r.raw_floor)}"
    drain_rate = r.median("drain_rate")
    end_to_end = r.median("end_to_end")
    settles = statistics.median(x.settle_calls for x in r.runs)
    receives = -(-s.jobs // RECEIVE)
    out: list[Cells] = [
        (
            f"queue.send() one job per call ({s.send_one:,})",
            _rate(r.send_one),
            "-",
            "-",
            "-",
            "-",
        ),
        (
            f"queue backlog: bus.publish_many() ({s.jobs:,})",
            _rate(r.median("publish_rate")),
            "-",
            "-",
            "-",
            "-",
        ),
        (
            f"queue receive({RECEIVE}) + ack(), 1 consumer ({s.jobs:,})",
            _rate(drain_rate)
            + (f" ({settles:.0f} ack txns / {receives} receives)" if settles >= 0 else ""),
            floor,
            f"{drain_rate / r.raw_floor:.0%}",
            f">= {TARGET:,} rec/s",
            _met(drain_rate, TARGET),
        ),
        (
            "queue publish_many + receive + ack, 1 consumer",
            _rate(end_to_end),
            floor,
            f"{end_to_end / r.raw_floor:.0%}",
            f">= {TARGET:,} rec/s",
            _met(end_to_end, TARGET),
        ),
    ]
    single = r.processes.get(1)
    for n, p in sorted(r.processes.items()):
        result = _rate(p.rate)
        if n > 1 and single is not None:
            result += f" ({p.rate / single.rate:.2f}x of 1)"
        if n > 1:
            result += f" [{'/'.join(f'{c:,}' for c in p.per_process)}]"
        out.append(
            (
                f"queue receive + ack, {n} consumer process{'es' if n > 1 else ''}",
                result,
                floor,
                f"{p.rate / r.raw_floor:.0%}",
                "-",
                "-",
            )
        )
    small, large = sorted(r.backlog)
    out.append(
        (
            f"queue drain, small backlog: first {min(small, s.drain):,} of {small:,}",
            _rate(r.backlog[small]),
            "-",
            "-",
            "-",
            "-",
        )
    )
    ratio = r.backlog[large] / r.backlog[small]
    out.append(
        (
            f"queue drain, large backlog: first {min(large, s.drain):,} of {large:,}",
            _rate(r.backlog[large]),
            f"small backlog {_rate(r.backlog[small])}",
            f"{ratio:.0%}",
            ">= 80% of small",  # no slower with a large backlog (faster is noise)
            "yes" if ratio >= 0.8 else "NO",
        )
    )
    for peer in r.peers:
        out.append(
            (
                f"peer {peer.name}: {peer.put_call} one per call ({peer.jobs:,})",
                _rate(peer.put_rate),
                f"tidings queue.send() {_rate(r.send_one)}",
                f"tidings {r.send_one / peer.put_rate:.2f}x",
                "-",
                "-",
            )
        )
        out.append(
            (
                f"peer {peer.name}: {peer.take_call} ({peer.jobs:,}; {peer.durability})",
                _rate(peer.take_rate),
                f"tidings receive+ack {_rate(drain_rate)}",
                f"tidings {drain_rate / peer.take_rate:.1f}x",
                "-",
                "-",
            )
        )
    out.append(
        (
            f"raw: sqlite3 read + decode + 2 write txns per {RECEIVE} records",
            _rate(r.raw_floor),
            "-",
            "-",
            "-",
            "-",
        )
    )
    return out
