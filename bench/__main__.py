"""python -m bench: the suite (bench/suite.py), or one section alone with its own table.

With no section flag, `python -m bench [--quick] [--only ...]` runs the suite: every
scenario, tidings beside its peers. A section flag runs that section alone: --log (the
raw limits and tidings' own log targets), --queue, --pubsub, --kafka, --cdc, --es,
--engines.
"""

from __future__ import annotations

import argparse
import json
import platform
import shutil
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from bench import cdc as cdc_section
from bench import engines as engines_section
from bench import es as es_section
from bench import kafka as kafka_section
from bench import log, raw, suite
from bench import pubsub as pubsub_section
from bench import queue as queue_section
from bench.stats import Latency

SEND_LOOP_TARGET = 700_000
SEND_MANY_TARGET = 1_500_000
CONSUME_TARGET = 2_000_000
"""Concurrent publishers share fsyncs: N of them reach this many times one's rate."""


@dataclass(frozen=True)
class Row:
    """One line of the table."""

    measurement: str
    result: str
    raw_limit: str
    ratio: str
    target: str
    met: str


def _rate(x: float) -> str:
    return f"{x:,.0f} rec/s"


def _ms(x: float) -> str:
    return f"{x * 1000:.2f} ms"


def _latency(lat: Latency, unit: str = "rec/s") -> str:
    return f"p50 {_ms(lat.p50)}, p99 {_ms(lat.p99)}; {lat.rate:,.0f} {unit}"


def _throughput_row(name: str, value: float, raw_name: str, limit: float, target: float) -> Row:
    return Row(
        name,
        _rate(value),
        f"{raw_name} {_rate(limit)}",
        f"{value / limit:.0%}",
        f">= {target:,.0f} rec/s",
        "yes" if value >= target else "NO",
    )


def rows(limits: raw.RawLimits, results: log.LogResults) -> list[Row]:
    """The table: tidings against the matching raw limit, then the raw limits themselves."""
    out = [
        _throughput_row(
            "producer.send() loop + flush()",
            results.send_loop,
            "sqlite blob/batch",
            limits.sqlite_blob_insert,
            SEND_LOOP_TARGET,
        ),
        _throughput_row(
            "bus.publish_many(list)",
            results.send_many,
            "sqlite blob/batch",
            limits.sqlite_blob_insert,
            SEND_MANY_TARGET,
        ),
        _throughput_row(
            "group consumer, from beginning",
            results.consume,
            "sqlite read+decode",
            limits.sqlite_read_decode,
            CONSUME_TARGET,
        ),
    ]
    commit = limits.sqlite_commit
    for who, lat in results.publish.items():
        # each concurrent figure is compared with one publisher of the same face: group
        # commit shows as a rate that grows with the publishers
        single = results.publish.get("1 async task" if "async" in who else "1 thread")
        result = _latency(lat)
        if not who.startswith("1 ") and single is not None and single.rate:
            result += f" ({lat.rate / single.rate:.1f}x of 1)"
        out.append(
            Row(
                f"bus.publish() round trip, {who}",
                result,
                f"sqlite commit p50 {_ms(commit.p50)}",
                f"p50 {lat.p50 / commit.p50:.1f}x raw" if commit.p50 else "-",
                "-",
                "-",
            )
        )
    for name, value in (
        ("raw: sqlite3 one blob per 1000-record commit", limits.sqlite_blob_insert),
        ("raw: sqlite3 one row per record, 1000 per commit", limits.sqlite_row_insert),
        ("raw: sqlite3 read + tidings decode", limits.sqlite_read_decode),
        ("raw: sqlite3 read + struct split", limits.sqlite_read_split),
        ("raw: file append + fsync per 1000 records", limits.file_append_fsync),
    ):
        out.append(Row(name, _rate(value), "-", "-", "-", "-"))
    for name, lat in (
        ("raw: write 100 KB + fsync", limits.fsync_100kb),
        ("raw: sqlite3 commit of one row", limits.sqlite_commit),
    ):
        out.append(Row(name, _latency(lat, "ops/s"), "-", "-", "-", "-"))
    return out


HEADINGS = Row("measurement", "result", "raw limit", "ratio", "target", "met")


def render(table: list[Row]) -> str:
    """The rows as an aligned text table."""
    lines = [HEADINGS, *table]
    columns = list(zip(*(astuple_row(r) for r in lines), strict=True))
    widths = [max(len(cell) for cell in column) for column in columns]
    text = []
    for i, row in enumerate(lines):
        text.append(
            "  ".join(cell.ljust(w) for cell, w in zip(astuple_row(row), widths, strict=True))
        )
        if i == 0:
            text.append("  ".join("-" * w for w in widths))
    return "\n".join(line.rstrip() for line in text)


def astuple_row(row: Row) -> tuple[str, ...]:
    """A row's cells in column order."""
    return (row.measurement, row.result, row.raw_limit, row.ratio, row.target, row.met)


def parse(argv: list[str]) -> argparse.Namespace:
    """Command-line options."""
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    parser.add_argument(
        "--log",
        action="store_true",
        help="run the log section: the raw limits and tidings' own log figures against "
        "their targets",
    )
    parser.add_argument("--records", type=int, default=1_000_000, help="records per throughput run")
    parser.add_argument(
        "--round-trips", type=int, default=2000, help="publish() calls per latency run"
    )
    parser.add_argument("--repeat", type=int, default=3, help="runs per throughput figure (median)")
    parser.add_argument(
        "--quick", action="store_true", help="tiny sizes: a smoke test, not a figure"
    )
    parser.add_argument("--json", type=Path, help="also write the results to this file")
    parser.add_argument("--dir", type=Path, help="where to put the stores (default: a temp dir)")
    parser.add_argument(
        "--queue",
        action="store_true",
        help="run the queue section instead: tidings queues beside persist-queue and "
        "litequeue (its own sizes; --records, --round-trips and --repeat do not apply)",
    )
    parser.add_argument(
        "--pubsub",
        action="store_true",
        help="run the pub/sub section instead: publish -> subscriber latency and group "
        "fan-out on memory:// and sqlite:// (its own sizes; --records, --round-trips and "
        "--repeat do not apply)",
    )
    parser.add_argument(
        "--kafka",
        action="store_true",
        help="run the Kafka section instead: confluent-kafka producing to and reading "
        "from tidings serve and from Tansu (its own sizes; --records, --round-trips and "
        "--repeat do not apply)",
    )
    parser.add_argument(
        "--cdc",
        action="store_true",
        help="run the change data capture section instead: database commit -> record on "
        "the topic, from SQLite and from a PostgreSQL started for the run (its own sizes; "
        "--records, --round-trips and --repeat do not apply)",
    )
    parser.add_argument(
        "--es",
        action="store_true",
        help="run the event sourcing section instead: the tidings event store beside the "
        "eventsourcing library on SQLite (its own sizes; --records, --round-trips and "
        "--repeat do not apply)",
    )
    parser.add_argument(
        "--engines",
        action="store_true",
        help="run the engines section instead: the tidings API on kafka:// (Tansu) and "
        "nats:// beside confluent-kafka and nats-py doing the same work (its own sizes; "
        "--records, --round-trips and --repeat do not apply)",
    )
    args = parser.parse_args(argv)
    if args.quick:
        args.records, args.round_trips, args.repeat = 20_000, 64, 1
    return args


@contextmanager
def workspace(args: argparse.Namespace) -> Iterator[Path]:
    """The directory for the stores: --dir (kept), or a temporary one (removed after)."""
    directory = Path(args.dir or tempfile.mkdtemp(prefix="tidings-bench-"))
    try:
        yield directory
    finally:
        if args.dir is None:
            shutil.rmtree(directory, ignore_errors=True)


def report(args: argparse.Namespace, heading: str, table: list[Row], doc: dict[str, Any]) -> int:
    """Print the heading and table; write `doc` plus the table to --json if asked."""
    print(heading)
    print(render(table))
    if args.json is not None:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        doc = {**doc, "table": [asdict(r) for r in table]}
        args.json.write_text(json.dumps(doc, indent=2))
    return 0


SECTIONS = ("--log", "--queue", "--pubsub", "--kafka", "--cdc", "--es", "--engines")


def main(argv: list[str] | None = None) -> int:
    """Run the suite, or the section a flag names, and print its table."""
    argv = sys.argv[1:] if argv is None else argv
    if not set(SECTIONS) & set(argv):
        return suite.main(argv)
    args = parse(argv)
    if args.queue:
        return main_queue(args)
    if args.pubsub:
        return main_pubsub(args)
    if args.kafka:
        return main_kafka(args)
    if args.cdc:
        return main_cdc(args)
    if args.es:
        return main_es(args)
    if args.engines:
        return main_engines(args)
    started = time.perf_counter()
    with workspace(args) as directory:
        samples = max(20, args.round_trips // 10)
        limits = raw.measure(directory / "raw", args.records, samples, args.repeat)
        results = log.measure(
            directory / "log", args.records, args.round_trips, args.repeat, (8, 32)
        )
    heading = (
        f"tidings bench: {args.records:,} records of 100 bytes, median of {args.repeat}, "
        f"python {platform.python_version()}, {time.perf_counter() - started:.0f} s"
    )
    doc = {
        "records": args.records,
        "repeat": args.repeat,
        "raw": asdict(limits),
        "tidings": asdict(results),
    }
    return report(args, heading, rows(limits, results), doc)


def run_section(
    args: argparse.Namespace,
    name: str,
    section: Any,
    describe: Callable[[Any, Any], str],
    extra: Callable[[Any], list[str]] | None = None,
) -> int:
    """Run one section (its Sizes, measure and rows); print its table, lines and notes."""
    sizes = section.Sizes.quick() if args.quick else section.Sizes()
    started = time.perf_counter()
    with workspace(args) as directory:
        results = section.measure(directory / name, sizes)
    heading = (
        f"tidings bench --{name}: {describe(sizes, results)}, "
        f"python {platform.python_version()}, {time.perf_counter() - started:.0f} s"
    )
    table = [Row(*cells) for cells in section.rows(results)]
    code = report(args, heading, table, {name: asdict(results)})
    for line in extra(results) if extra else []:
        print(line)
    for note in results.notes:
        print(f"note: {note}")
    return code


def main_queue(args: argparse.Namespace) -> int:
    """Run the queue section and print its table."""
    return run_section(
        args,
        "queue",
        queue_section,
        lambda sizes, _: (
            f"100-byte jobs on sqlite:// (default fsync), "
            f"receive(max_records={queue_section.RECEIVE}), median of {sizes.repeat}"
        ),
    )


def main_pubsub(args: argparse.Namespace) -> int:
    """Run the pub/sub section and print its table."""
    return run_section(
        args,
        "pubsub",
        pubsub_section,
        lambda sizes, _: (
            f"100-byte values, async API, memory:// and sqlite:// (default fsync), up to "
            f"{sizes.messages:,} publish() at {sizes.rate:,}/s for {sizes.seconds:g} s per "
            f"latency run"
        ),
        pubsub_section.stage_lines,
    )


def main_kafka(args: argparse.Namespace) -> int:
    """Run the Kafka section and print its table."""
    return run_section(
        args,
        "kafka",
        kafka_section,
        lambda sizes, results: (
            f"{sizes.records:,} records of 100 bytes to one partition, {results.client}, "
            f"tidings serve and Tansu on 127.0.0.1, median of {sizes.repeat}"
        ),
    )


def main_cdc(args: argparse.Namespace) -> int:
    """Run the change data capture section and print its table."""
    return run_section(
        args,
        "cdc",
        cdc_section,
        lambda sizes, _: (
            f"rows of 100 bytes from SQLite and PostgreSQL to sqlite:// (default fsync), "
            f"{sizes.rows:,} in commits of {sizes.per_commit:,}, then single-row commits at "
            f"{sizes.rate:,}/s for {sizes.seconds:g} s"
        ),
    )


def main_es(args: argparse.Namespace) -> int:
    """Run the event sourcing section and print its table."""
    return run_section(
        args,
        "es",
        es_section,
        lambda sizes, results: (
            f"the tidings {results.versions['tidings']} event store on sqlite:// (fsync per "
            f"append) beside eventsourcing {results.versions['eventsourcing']} on SQLite, "
            f"account aggregates, median of {sizes.repeat}"
        ),
    )


def main_engines(args: argparse.Namespace) -> int:
    """Run the engines section and print its table."""
    return run_section(
        args,
        "engines",
        engines_section,
        lambda sizes, _: (
            f"100-byte values, {sizes.kafka_records:,} records on kafka:// (Tansu), "
            f"{sizes.nats_records:,} on nats:// (JetStream, file storage), median of "
            f"{sizes.repeat}"
        ),
    )


if __name__ == "__main__":
    raise SystemExit(main())
