"""python -m bench: every scenario, tidings beside its peers, in one run; a table, JSON, a chart.

The peers run on this machine in the same run, each started by the suite on 127.0.0.1
and stopped by its pid: `tidings serve` and Tansu (Kafka protocol, confluent-kafka),
redis-server (Streams and pub/sub, redis-py with hiredis), nats-server (JetStream and core
NATS, nats-py), and the libraries persist-queue, litequeue and eventsourcing. Every
figure is the median of its runs, each of a bounded size; the table states every
system's durability. The results go to bench/results/latest.json and latest.png
(--quick: quick.json and quick.png; --only: partial.json and partial.png).
"""

from __future__ import annotations

import argparse
import importlib.metadata
import os
import platform
import shutil
import sqlite3
import subprocess
import tempfile
import time
import traceback
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import asdict
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import confluent_kafka

from bench import chart, kafka, nats_server, plan, scaling, sections, versus
from bench.redis_server import version as redis_version
from bench.report import Figure, compare, render, write_json
from tidings.cli.progress import Progress, duration

RESULTS = Path(__file__).parent / "results"
PEERS = ("log", "queue", "pubsub")
"""The scenarios that need the brokers running."""
SCENARIOS = ("log", "queue", "pubsub", "es", "raw", "scaling", "cdc", "engines")
LEGEND = (
    "records/s: the median run (higher is better); p50/p99: latency (lower is better). "
    "of raw limit: records/s as a share of this machine's limit at the same value size "
    "(writes: file append + fsync per 1000 records; reads: sqlite3 read + decode; queue "
    "take: the sqlite3 queue floor; round trips: one sqlite3 commit). tidings / best peer: "
    "tidings records/s over the best peer's (above 1: tidings leads); latency rows: p50 "
    "over the best peer's p50 (below 1: tidings leads); scaling rows: x of their first step."
)


def parse(argv: list[str]) -> argparse.Namespace:
    """Command-line options."""
    parser = argparse.ArgumentParser(
        prog="python -m bench",
        description=__doc__,
        epilog="One section alone, with its own table: python -m bench --log | --queue | "
        "--pubsub | --kafka | --cdc | --es | --engines [--quick] (see --log --help).",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "--quick", action="store_true", help="tiny sizes, one run each: a smoke test (< 2 min)"
    )
    parser.add_argument(
        "--only",
        type=lambda text: [s.strip() for s in text.split(",") if s.strip()],
        default=None,
        metavar="SCENARIOS",
        help=f"run only these, comma-separated: {', '.join(SCENARIOS)} (raw always runs)",
    )
    parser.add_argument(
        "--results", type=Path, default=RESULTS, help=f"where to write (default: {RESULTS})"
    )
    parser.add_argument("--dir", type=Path, help="where to put the stores (default: a temp dir)")
    args = parser.parse_args(argv)
    unknown = set(args.only or ()) - set(SCENARIOS)
    if unknown:
        parser.error(f"unknown scenarios {sorted(unknown)}; choose from {', '.join(SCENARIOS)}")
    return args


@contextmanager
def workspace(directory: Path | None) -> Iterator[Path]:
    """`directory` (kept), or a temporary one removed afterwards."""
    path = Path(directory or tempfile.mkdtemp(prefix="tidings-bench-"))
    try:
        yield path
    finally:
        if directory is None:
            shutil.rmtree(path, ignore_errors=True)


def _version(command: list[str]) -> str:
    try:
        out = subprocess.run(command, capture_output=True, text=True, timeout=30, check=True)
    except (OSError, subprocess.SubprocessError):
        return "?"
    return out.stdout.strip().splitlines()[0] if out.stdout.strip() else "?"


def versions() -> dict[str, str]:
    """Every system's and client's version in this run."""
    packages = (
        "tidings",
        "confluent-kafka",
        "redis",
        "hiredis",
        "nats-py",
        "persist-queue",
        "litequeue",
        "eventsourcing",
    )
    found = {name: importlib.metadata.version(name) for name in packages}
    found["librdkafka"] = confluent_kafka.libversion()[0]
    found["Tansu"] = _version([str(kafka.tansu_binary()), "--version"])
    found["redis-server"] = redis_version()
    found["nats-server"] = _version([nats_server.binary(), "--version"]).split()[-1]
    found["SQLite"] = sqlite3.sqlite_version
    return found


def heading(sizes: plan.Sizes, quick: bool) -> str:
    """What the run moved, in one paragraph above the table."""
    s, g = sizes, sizes.scaling
    log = ", ".join(f"{records:,} x {plan.size_label(size)}" for size, records in s.log)
    stored = " -> ".join(f"{n:,}" for n in g.stored)
    return (
        f"tidings bench{' --quick (a smoke test, not figures)' if quick else ''}: median of "
        f"{s.repeat} run(s) per figure; 100-byte values unless stated. Log runs: {log} "
        f"records; queue: {s.jobs:,} jobs ({s.peer_jobs:,} for persist-queue and litequeue); "
        f"pub/sub: {s.rate:,} publishes/s for {s.seconds:g} s; scaling: "
        f"{'/'.join(map(str, g.steps))} partitions, producer threads, consumer processes; "
        f"stored log: {stored} records, {g.probe:,} appended and taken, the newest "
        f"{g.read_probe:,} read at each size. "
        f"python {platform.python_version()}, {os.cpu_count()} cores."
    )


def measure(
    directory: Path, sizes: plan.Sizes, only: set[str], failed: dict[str, str]
) -> tuple[list[Figure], dict[str, float]]:
    """Run the chosen scenarios; every figure, and seconds per scenario.

    A scenario that fails is named in `failed` with its error, and the others still run:
    one broken peer costs its own figures, not the whole run's.
    """
    seconds: dict[str, float] = {}
    figures: list[Figure] = []
    steps = len(only | {"raw"})
    started: list[str] = []
    progress = Progress()
    began = time.perf_counter()

    def step(name: str) -> None:
        started.append(name)
        progress.message(
            f"bench  {name} ({len(started)}/{steps})  "
            f"{duration(time.perf_counter() - began)} elapsed"
        )

    def timed(name: str, run: Callable[[], list[Figure]]) -> None:
        if name not in only:
            return
        step(name)
        start = time.perf_counter()
        try:
            figures.extend(run())
        except Exception as e:
            failed[name] = f"{type(e).__name__}: {e}"
            traceback.print_exc()
        seconds[name] = time.perf_counter() - start
        print(f"  {name}: {seconds[name]:.0f} s{' FAILED' if name in failed else ''}", flush=True)

    step("raw")
    start = time.perf_counter()
    limits, raw_figures = sections.raw_limits(directory / "raw", sizes)
    figures.extend(raw_figures)
    seconds["raw"] = time.perf_counter() - start
    with ExitStack() as stack:
        if only & set(PEERS):
            s = stack.enter_context(plan.servers(directory / "servers"))
            timed(
                "log",
                lambda: versus.durable_log(versus.log_systems(directory / "log", s), sizes, limits),
            )
            timed(
                "queue",
                lambda: versus.queues(
                    versus.queue_systems(directory / "queue", s, sizes), sizes, limits
                ),
            )
            timed(
                "pubsub",
                lambda: versus.pubsub_latency(
                    versus.pubsub_systems(directory / "pubsub", s, sizes), sizes
                ),
            )
    timed("es", lambda: sections.event_store(directory / "es", sizes))
    timed("scaling", lambda: scaling.measure(directory / "scaling", sizes.scaling))
    timed("cdc", lambda: sections.change_data_capture(directory / "cdc", sizes))
    timed("engines", lambda: sections.engine_overhead(directory / "engines", sizes))
    figures.sort(key=lambda f: int(f.scenario.split(".")[0]))  # stable: runs keep their order
    return compare(figures), seconds


def main(argv: list[str] | None = None) -> int:
    """Run the suite; print the table; write the JSON and the chart."""
    args = parse(argv if argv is not None else [])
    sizes = plan.Sizes.quick() if args.quick else plan.Sizes()
    only = set(args.only or SCENARIOS)
    name = "quick" if args.quick else "partial" if args.only else "latest"
    started = time.perf_counter()
    print(f"tidings bench: running {', '.join(s for s in SCENARIOS if s in only)}", flush=True)
    failed: dict[str, str] = {}
    with workspace(args.dir) as directory:
        figures, seconds = measure(directory, sizes, only, failed)
    total = time.perf_counter() - started
    text = heading(sizes, args.quick)
    print()
    print(f"{text} {total:.0f} s in all.")
    print(render(figures))
    print()
    print(LEGEND)
    found = versions()
    print("versions: " + ", ".join(f"{k} {v}" for k, v in found.items()))
    meta: dict[str, Any] = {
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "quick": args.quick,
        "heading": text,
        "legend": LEGEND,
        "seconds": {**seconds, "total": total},
        "python": platform.python_version(),
        "cpus": os.cpu_count(),
        "versions": found,
        "sizes": asdict(sizes),
        "failed": failed,
    }
    write_json(args.results / f"{name}.json", meta, figures)
    title = (
        f"tidings bench{' --quick (not figures)' if args.quick else ''}, {meta['date'][:10]}: "
        f"{os.cpu_count()} cores, python {meta['python']}, median of {sizes.repeat}; "
        "records/s higher is better, latency lower; log scales"
    )
    chart.draw(figures, args.results / f"{name}.png", title)
    print(f"wrote {args.results / name}.json and {name}.png")
    for scenario, error in failed.items():
        print(f"FAILED {scenario}: {error}")
    return 1 if failed else 0
