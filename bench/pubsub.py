"""Publish/subscribe on the async API, on memory:// and sqlite:// (default fsync), in one run.

Every figure moves 100-byte values through `tidings.connect_async()`:

- latency: one publisher task `await bus.publish()`es at a fixed rate, each value carrying
  its sequence number; the time from just before publish() to the moment a subscriber task
  (`async for` over its consumer) holds the record, for one ephemeral subscriber
  (`bus.subscribe(topic)`), four ephemeral subscribers (fan-out) and four consumer groups
  (`bus.consumer(topic, group=...)`), each of which gets every record;
- fan-out throughput: four groups each reading the same topic from the beginning at once;
- the raw limit: asyncio's own task-to-task hand-off, an asyncio.Queue put -> get between
  two tasks paced the same way, so every latency also reads as a multiple of it;
- once per engine, where one record's latency goes: publish -> store commit -> wake-up of
  the waiting consumer -> the loop runs the reader -> records in hand (from the engine's
  tail of recent batches, else a store read; decoded) -> the subscriber task.
"""

from __future__ import annotations

import asyncio
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import tidings
from bench.stats import VALUE_SIZE, Latency

TOPIC = "events"
SUBSCRIBERS = 4
"""Ephemeral subscribers, and consumer groups, in the fan-out figures."""
P50_TARGET = 50e-6
P99_TARGET = 500e-6
TARGETED = ("memory", "1 subscriber")
"""The figure the latency targets are for: one async subscriber in the publishing process."""
"""In-process publish -> subscriber latency targets (the issue)."""
FETCH = 1000
"""max_records of each poll() in the fan-out throughput figure."""
WARM_TIMEOUT_S = 10.0

Cells = tuple[str, str, str, str, str, str]
"""measurement, result, raw limit, ratio, target, met: bench/__main__.py's columns."""


@dataclass(frozen=True)
class Sizes:
    """How much each measurement moves."""

    rate: int = 2_000
    """publish() calls per second in the latency runs."""
    seconds: float = 2.0
    """length of each latency run: a publisher slower than the rate stops after it."""
    fanout_records: int = 200_000
    """records in the topic the groups read from the beginning."""
    stage_records: int = 500
    """records of the once-per-engine stage timing (one subscriber, 1,000/s)."""

    @classmethod
    def quick(cls) -> Sizes:
        """Tiny sizes: a smoke test, not a figure."""
        return cls(rate=1_000, seconds=0.25, fanout_records=20_000, stage_records=100)

    @property
    def messages(self) -> int:
        """publish() calls per latency run."""
        return max(1, round(self.rate * self.seconds))


@dataclass(frozen=True)
class FanOut:
    """Groups reading one topic from the beginning at the same time."""

    records: int
    groups: int
    per_group: list[float]
    """records/s of each group, from the start to its last record."""
    seconds: float
    """wall time until the last group had every record."""

    @property
    def total(self) -> float:
        """records/s delivered over all groups."""
        return self.records * self.groups / self.seconds


@dataclass(frozen=True)
class EngineResults:
    """One engine's figures."""

    engine: str
    latency: dict[str, Latency]
    """by setup: '1 subscriber', '4 subscribers', '4 groups' (all receipts of all readers)."""
    publish_rate: dict[str, float]
    """publish() calls per second each latency run achieved."""
    fanout: FanOut
    stages: dict[str, float]
    """median seconds of each stage of one record's trip (see stage_timing)."""


@dataclass(frozen=True)
class PubSubResults:
    """The pub/sub section of the benchmark."""

    sizes: Sizes
    raw: Latency
    """asyncio.Queue put -> get between two tasks, paced as the publisher."""
    engines: list[EngineResults]
    notes: list[str] = field(default_factory=list)


# -- helpers ------------------------------------------------------------------------------


def _value(seq: int) -> bytes:
    return f"{seq:012d}".encode().ljust(VALUE_SIZE, b"v")


def _seq(value: bytes | None) -> int:
    assert value is not None
    return int(value[:12])


WARM = -1
"""Sequence numbers below zero mark warm-up records, not measured."""


def _url(engine: str, directory: Path, name: str) -> str:
    if engine == "memory":
        return "memory://"
    path = directory / f"{name}.db"
    for suffix in ("", "-wal", "-shm"):
        Path(f"{path}{suffix}").unlink(missing_ok=True)
    return f"sqlite://{path}"


async def _paced(
    count: int, rate: int, send: Callable[[int], Any], limit_s: float = float("inf")
) -> tuple[int, float]:
    """Call `await send(i)` up to `count` times at `rate` per second, stopping once
    `limit_s` have passed (a sender slower than the rate falls behind); (calls, seconds)."""
    loop = asyncio.get_running_loop()
    start = loop.time()
    done = 0
    while done < count and loop.time() - start < limit_s:
        # Always yield, even when behind: the loop sleeps in whole milliseconds (epoll),
        # so at 2,000/s a sender that did not would publish two records back to back
        # before any reader ran, and the first record's latency would include the second
        # publish. Each record's latency is its own, for tidings and asyncio alike.
        await asyncio.sleep(max(start + done / rate - loop.time(), 0))
        await send(done)
        done += 1
    return done, loop.time() - start


# -- the raw limit ------------------------------------------------------------------------


async def raw_queue(count: int, rate: int) -> Latency:
    """asyncio.Queue put -> get latency between two tasks, the getter waiting."""
    queue: asyncio.Queue[int] = asyncio.Queue()
    sent = [0.0] * count
    samples: list[float] = []

    async def getter() -> None:
        while len(samples) < count:
            i = await queue.get()
            samples.append(time.perf_counter() - sent[i])

    async def put(i: int) -> None:
        sent[i] = time.perf_counter()
        queue.put_nowait(i)

    task = asyncio.create_task(getter())
    await asyncio.sleep(0)
    _, elapsed = await _paced(count, rate, put)
    await task
    return Latency.of(samples, elapsed)


# -- latency ------------------------------------------------------------------------------


END = 10**11
"""The sequence number of the record published after the last measured one."""


async def _reader(consumer: tidings.AsyncConsumer, got: dict[int, float]) -> None:
    """Note when each record arrives, until the END record (one partition: all are in)."""
    async for record in consumer:
        now = time.perf_counter()
        seq = _seq(record.value)
        if seq == END:
            return
        got[seq] = now


async def _warm(bus: tidings.AsyncBus, received: list[dict[int, float]]) -> None:
    """Publish warm-up records until every reader has one (groups joined, positions set)."""
    deadline = time.monotonic() + WARM_TIMEOUT_S
    seq = WARM
    while not all(any(s < 0 for s in got) for got in received):
        if time.monotonic() > deadline:
            raise TimeoutError("readers did not start receiving in time")
        await bus.publish(TOPIC, f"{seq:012d}".encode().ljust(VALUE_SIZE, b"w"))
        seq -= 1
        await asyncio.sleep(0.01)


async def latency_run(url: str, setup: str, readers: int, sizes: Sizes) -> tuple[Latency, float]:
    """Publish at a fixed rate to `readers` subscribers or groups; (latency, publishes/s)."""
    count = sizes.messages
    bus = await tidings.connect_async(url)
    try:
        await bus.create_topic(TOPIC)
        consumers = [
            bus.subscribe(TOPIC) if setup == "subscribers" else bus.consumer(TOPIC, group=f"g{i}")
            for i in range(readers)
        ]
        received: list[dict[int, float]] = [{} for _ in consumers]
        tasks = [
            asyncio.create_task(_reader(c, got)) for c, got in zip(consumers, received, strict=True)
        ]
        await _warm(bus, received)
        sent = [0.0] * count

        values = [_value(i) for i in range(count)]  # made ahead: not part of publish()

        async def publish(i: int) -> None:
            sent[i] = time.perf_counter()
            await bus.publish(TOPIC, values[i])

        done, elapsed = await _paced(count, sizes.rate, publish, sizes.seconds)
        await bus.publish(TOPIC, _value(END))
        await asyncio.wait_for(asyncio.gather(*tasks), 30)
        for c in consumers:
            await c.close()
        samples = [got[i] - sent[i] for got in received for i in range(done)]
        return Latency.of(samples, elapsed), done / elapsed
    finally:
        await bus.close()


# -- fan-out throughput -------------------------------------------------------------------


async def fanout_run(url: str, records: int, groups: int) -> FanOut:
    """`groups` groups read the same `records`-record topic from the beginning at once."""
    bus = await tidings.connect_async(url)
    try:
        await bus.create_topic(TOPIC)
        chunk = [_value(0)] * min(records, 50_000)
        for first in range(0, records, len(chunk)):
            await bus.publish_many(TOPIC, chunk[: records - first])
        consumers = [
            bus.consumer(TOPIC, group=f"fan-{i}", from_beginning=True) for i in range(groups)
        ]
        for c in consumers:
            await c.start()
        start = time.perf_counter()

        async def drain(consumer: tidings.AsyncConsumer) -> float:
            seen = 0
            while seen < records:
                batch = await consumer.poll(max_records=FETCH, timeout_ms=5000)
                if not batch:
                    raise RuntimeError(f"group ran dry after {seen:,} of {records:,} records")
                seen += len(batch)
            return time.perf_counter() - start

        ends = await asyncio.gather(*(drain(c) for c in consumers))
        seconds = time.perf_counter() - start
        for c in consumers:
            await c.close()
        return FanOut(records, groups, [records / e for e in ends], seconds)
    finally:
        await bus.close()


# -- where the time goes ------------------------------------------------------------------

STAGES = (
    "publish -> store submit",
    "submit -> commit",
    "commit -> wake-up",
    "wake-up -> reader resumes",
    "reader resumes -> records in hand",
    "records in hand -> subscriber task",
    "total",
)


async def stage_timing(url: str, count: int) -> dict[str, float]:
    """Time each stage of one record's trip once, one subscriber, 1,000 publishes/s.

    Wraps, on this bus's own objects only, the store's submit(), the engine's wake-up of
    waiting readers and its wait for data, and the consumer's wait and fetch, noting when
    each ran: the wake-up is the engine's, then the loop runs the reader's task ("reader
    resumes"), which takes the records from the engine's tail or fetches them ("records in
    hand"). Every record's stages are the first such events after its publish() and, for
    the reader's, the last before its arrival. Medians, in seconds.
    """
    bus = await tidings.connect_async(url)
    events: dict[str, list[float]] = {
        k: [] for k in ("submit", "commit", "wake", "resume", "in_hand")
    }
    clock = time.perf_counter
    try:
        await bus.create_topic(TOPIC)
        engine: Any = bus.engine
        store: Any = engine.store
        # an in-memory store appends inline (append), sqlite through its writer (submit)
        entry = "submit" if store.reads_block else "append"
        submit, bump, wait_for_data = getattr(store, entry), engine._bump, engine.wait_for_data

        def timed_submit(batches: Any) -> Any:
            events["submit"].append(clock())
            return submit(batches)

        def timed_bump(appended: Any = ()) -> None:
            events["wake"].append(clock())
            bump(appended)

        async def timed_wait_for_data(version: int, timeout_s: float, *wanted: Any) -> Any:
            out = await wait_for_data(version, timeout_s, *wanted)
            events["resume"].append(clock())
            return out

        setattr(store, entry, timed_submit)
        engine._bump = timed_bump
        engine.wait_for_data = timed_wait_for_data
        # first in line: the engine's own listener may wake the readers inline
        store._listeners.insert(0, lambda _: events["commit"].append(clock()))
        sub = bus.subscribe(TOPIC)
        inner: Any = sub._inner
        for name in ("_wait", "_fetch"):
            setattr(inner, name, _noting_records(getattr(inner, name), events["in_hand"]))
        received: list[dict[int, float]] = [{}]
        task = asyncio.create_task(_reader(sub, received[0]))
        await _warm(bus, received)
        sent = [0.0] * count

        values = [_value(i) for i in range(count)]  # made ahead: not part of publish()

        async def publish(i: int) -> None:
            sent[i] = clock()
            await bus.publish(TOPIC, values[i])

        count, _ = await _paced(count, 1000, publish, count / 1000)
        await bus.publish(TOPIC, _value(END))
        await asyncio.wait_for(task, 30)
        await sub.close()
    finally:
        await bus.close()

    def first_after(kind: str, t: float, end: float) -> float | None:
        return next((x for x in events[kind] if t <= x <= end), None)

    def last_before(kind: str, t: float, end: float) -> float | None:
        return next((x for x in reversed(events[kind]) if t <= x <= end), None)

    spans: dict[str, list[float]] = {k: [] for k in STAGES}
    got = received[0]
    for i in range(count):
        t0, t_end = sent[i], got[i]
        marks = [
            first_after("submit", t0, t_end),
            first_after("commit", t0, t_end),
            first_after("wake", t0, t_end),
            last_before("resume", t0, t_end),
            last_before("in_hand", t0, t_end),
        ]
        if any(m is None for m in marks):
            continue  # an event fell outside the window (e.g. a fetch begun earlier)
        times = [t0, *(m for m in marks if m is not None), t_end]
        if times != sorted(times):
            continue
        for name, a, b in zip(STAGES, times, times[1:], strict=False):
            spans[name].append(b - a)
        spans["total"].append(t_end - t0)
    return {k: statistics.median(v) if v else float("nan") for k, v in spans.items()}


def _noting_records(fn: Callable[..., Any], times: list[float]) -> Callable[..., Any]:
    """`fn`, an async call returning records, noting when it returned some."""

    async def noted(*args: Any) -> Any:
        out = await fn(*args)
        if out:
            times.append(time.perf_counter())
        return out

    return noted


# -- everything ---------------------------------------------------------------------------

SETUPS = (
    ("1 subscriber", "subscribers", 1),
    (f"{SUBSCRIBERS} subscribers", "subscribers", SUBSCRIBERS),
    (f"{SUBSCRIBERS} groups", "groups", SUBSCRIBERS),
)


async def _measure(directory: Path, sizes: Sizes) -> PubSubResults:
    raw = await raw_queue(sizes.messages, sizes.rate)
    engines = []
    notes = []
    for engine in ("memory", "sqlite"):
        latency: dict[str, Latency] = {}
        rates: dict[str, float] = {}
        for name, setup, readers in SETUPS:
            url = _url(engine, directory, f"{setup}-{readers}")
            latency[name], rates[name] = await latency_run(url, setup, readers, sizes)
            if rates[name] < 0.95 * sizes.rate:
                notes.append(
                    f"{engine}, {name}: the publisher reached {rates[name]:,.0f} of "
                    f"{sizes.rate:,} publish()/s (each publish() awaits its store commit)"
                )
        fan = await fanout_run(_url(engine, directory, "fanout"), sizes.fanout_records, SUBSCRIBERS)
        stages = await stage_timing(_url(engine, directory, "stages"), sizes.stage_records)
        engines.append(EngineResults(engine, latency, rates, fan, stages))
    return PubSubResults(sizes, raw, engines, notes)


def measure(directory: Path, sizes: Sizes) -> PubSubResults:
    """Every pub/sub measurement, on both engines, in this run."""
    directory.mkdir(parents=True, exist_ok=True)
    return asyncio.run(_measure(directory, sizes))


# -- the table ----------------------------------------------------------------------------


def _us(x: float) -> str:
    return f"{x * 1e6:,.0f} µs"


def _lat(lat: Latency) -> str:
    return f"p50 {_us(lat.p50)}, p99 {_us(lat.p99)}"


def rows(r: PubSubResults) -> list[Cells]:
    """The pub/sub section's table rows."""
    raw = r.raw
    raw_cell = f"asyncio.Queue p50 {_us(raw.p50)}"
    target = f"p50 <= {_us(P50_TARGET)}, p99 <= {_us(P99_TARGET)}"
    out: list[Cells] = []
    for e in r.engines:
        for name, lat in e.latency.items():
            # the target is one async subscriber's, in process; the others are figures
            targeted = e.engine == TARGETED[0] and name == TARGETED[1]
            met = lat.p50 <= P50_TARGET and lat.p99 <= P99_TARGET
            out.append(
                (
                    f"pubsub {e.engine}: publish -> {name}, {r.sizes.rate:,}/s",
                    _lat(lat),
                    raw_cell,
                    f"p50 {lat.p50 / raw.p50:,.0f}x, p99 {lat.p99 / raw.p99:,.0f}x raw"
                    if raw.p50 and raw.p99
                    else "-",
                    target if targeted else "-",
                    ("yes" if met else "NO") if targeted else "-",
                )
            )
        f = e.fanout
        out.append(
            (
                f"pubsub {e.engine}: {f.groups} groups read {f.records:,} from beginning",
                f"{statistics.median(f.per_group):,.0f} rec/s per group, "
                f"{f.total:,.0f} rec/s total",
                "-",
                "-",
                "-",
                "-",
            )
        )
    out.append(
        (
            f"raw: asyncio.Queue put -> get between 2 tasks, {r.sizes.rate:,}/s",
            _lat(raw),
            "-",
            "-",
            "-",
            "-",
        )
    )
    return out


def stage_lines(r: PubSubResults) -> list[str]:
    """Where one record's latency goes, per engine (medians of the stage timing run)."""
    lines = []
    for e in r.engines:
        parts = ", ".join(f"{k} {_us(v)}" for k, v in e.stages.items())
        lines.append(f"stages {e.engine} (median, 1 subscriber, 1,000/s): {parts}")
    return lines
