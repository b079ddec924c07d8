"""`tidings produce` and `tidings consume`: records in and out, kcat style."""

from __future__ import annotations

import os
import signal
import sys
import threading
import time
from collections import deque
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from types import FrameType
from typing import BinaryIO

import click

import tidings
from tidings.api.jsonform import json_line, metadata_to_json, record_to_json
from tidings.api.producer import RecordFuture
from tidings.cli.common import format_option, open_bus
from tidings.core.errors import ConfigurationError
from tidings.core.records import Record, TopicPartition

REPORT_WINDOW = 10_000
"""Records in flight before `produce` waits for the oldest; bounds memory on big pipes."""
POLL_BATCH = 10_000
"""Most records taken per poll."""
POLL_MS = 200
"""Longest wait per poll, so a stop signal is noticed quickly."""
ASSIGNMENT_WAIT_S = 10.0
"""With a group, how long to wait for a share of the partitions before giving up."""
IDLE_MS = 1000
"""Without --follow, stop after this long without a record even short of the end offsets
(a compacted tail can leave the last offsets with no record to read)."""


@click.command()
@click.argument("topic")
@click.argument("values", nargs=-1)
@click.option("--key", "-k", help="Key of every record (unless --key-separator gives one).")
@click.option(
    "--header",
    "-H",
    "headers",
    multiple=True,
    metavar="NAME=VALUE",
    help="A header on every record (repeatable).",
)
@click.option("--partition", "-p", type=click.IntRange(min=0), help="Partition (default: by key).")
@click.option(
    "--key-separator",
    "-K",
    metavar="SEP",
    help="Split each value at the first SEP into key and value.",
)
@click.option("--quiet", "-q", is_flag=True, help="Do not print where records went.")
@click.option("--json", "as_json", is_flag=True, help="Print where records went as JSON lines.")
def produce(
    *,
    topic: str,
    values: tuple[str, ...],
    key: str | None,
    headers: tuple[str, ...],
    partition: int | None,
    key_separator: str | None,
    quiet: bool,
    as_json: bool,
) -> None:
    """Produce the VALUEs to TOPIC, or one record per line of stdin when none are given."""
    header_pairs = parse_headers(headers)
    default_key = None if key is None else os.fsencode(key)
    separator = None if key_separator is None else os.fsencode(key_separator)
    stdin = sys.stdin.buffer
    lines = [os.fsencode(v) for v in values] if values else stdin_lines(stdin)
    # at a terminal each line is confirmed as it is typed; in a pipe, results trail behind
    window = 0 if not values and stdin.isatty() else REPORT_WINDOW
    pending: deque[RecordFuture] = deque()

    def report(limit: int) -> None:
        while pending and (len(pending) > limit or pending[0].done()):
            meta = pending.popleft().result()
            if as_json:
                click.echo(json_line(metadata_to_json(meta)))
            elif not quiet:
                click.echo(f"{meta.topic}[{meta.partition}]@{meta.offset}")

    with open_bus(create=True) as bus, bus.producer() as producer:
        for line in lines:
            record_key, value = split_key(line, separator, default_key)
            pending.append(
                producer.send(
                    topic, value, key=record_key, headers=header_pairs, partition=partition
                )
            )
            report(window)
        producer.flush()
        report(0)


def parse_headers(headers: Sequence[str]) -> list[tuple[str, bytes]]:
    """NAME=VALUE options as header pairs, in order."""
    pairs = []
    for header in headers:
        name, sep, value = header.partition("=")
        if not sep or not name:
            raise click.BadParameter(f"expected NAME=VALUE, not {header!r}", param_hint="--header")
        pairs.append((name, os.fsencode(value)))
    return pairs


def stdin_lines(stream: BinaryIO) -> Iterator[bytes]:
    """Lines of `stream` as bytes, without their newline."""
    for line in stream:
        yield line[:-1] if line.endswith(b"\n") else line


def split_key(
    line: bytes, separator: bytes | None, default_key: bytes | None
) -> tuple[bytes | None, bytes]:
    """(key, value) of a line: split at the separator if present, else the default key."""
    if separator is not None:
        key, found, value = line.partition(separator)
        if found:
            return key, value
    return default_key, line


@click.command()
@click.argument("topics", nargs=-1, required=True)
@click.option("--group", "-g", help="Read as this consumer group and commit on exit.")
@click.option(
    "--from-beginning",
    is_flag=True,
    help="Start at the oldest record (a group: only where it has no committed offset).",
)
@click.option("--follow", "-f", is_flag=True, help="Wait for new records until Ctrl-C/SIGTERM.")
@click.option("--max", "max_records", type=click.IntRange(min=1), help="Stop after N records.")
@format_option
@click.option(
    "--timeout-ms",
    type=click.IntRange(min=0),
    metavar="MS",
    help="Stop after MS without a new record.",
)
def consume(
    *,
    topics: tuple[str, ...],
    group: str | None,
    from_beginning: bool,
    follow: bool,
    max_records: int | None,
    fmt: str,
    timeout_ms: int | None,
) -> None:
    """Print records of TOPICs; without --follow, stop at the end of the log.

    Without --group every partition is read and nothing is committed. The end is the
    end offsets measured when the command starts.
    """
    idle_ms = timeout_ms if timeout_ms is not None or follow else IDLE_MS
    out = sys.stdout.buffer
    with open_bus() as bus, stop_on_signals() as stop:
        ends = end_offsets(bus, topics)
        with open_consumer(bus, topics, group, from_beginning, ends, follow=follow) as consumer:
            for batch in poll_until_done(
                consumer, ends, stop, follow=follow, max_records=max_records, idle_ms=idle_ms
            ):
                write_records(out, batch, fmt)


def end_offsets(bus: tidings.Bus, topics: Iterable[str]) -> dict[TopicPartition, int]:
    """The end offset of every partition of `topics`, now."""
    return {
        TopicPartition(topic, p.partition): p.end_offset
        for topic in topics
        for p in bus.describe_topic(topic).partitions
    }


def open_consumer(
    bus: tidings.Bus,
    topics: Sequence[str],
    group: str | None,
    from_beginning: bool,
    partitions: Iterable[TopicPartition],
    *,
    follow: bool = True,
) -> tidings.Consumer:
    """A group member subscribed to `topics`, or a groupless reader of every partition."""
    if group is not None:
        # Not following, the command lives about IDLE_MS: a member that joins while others
        # own the partitions must get its share well within that, so it heartbeats often.
        heartbeat_ms = 1000 if follow else POLL_MS
        return bus.consumer(
            *topics,
            group=group,
            from_beginning=from_beginning,
            heartbeat_interval_ms=heartbeat_ms,
        )
    consumer = bus.consumer(from_beginning=from_beginning)
    consumer.assign(*partitions)
    return consumer


def poll_until_done(
    consumer: tidings.Consumer,
    ends: dict[TopicPartition, int],
    stop: threading.Event,
    *,
    follow: bool,
    max_records: int | None,
    idle_ms: int | None,
) -> Iterator[list[Record]]:
    """Batches of records until the end (or, following, a stop signal), --max or idle time."""
    count = 0
    started = last_record = time.monotonic()
    while not stop.is_set():
        limit = POLL_BATCH if max_records is None else min(POLL_BATCH, max_records - count)
        records = consumer.poll(max_records=limit, timeout_ms=POLL_MS)
        if not records and not consumer.assignment():
            # the group's other members still own every partition: idle time starts once
            # this member has a share, and the wait for one is bounded on its own
            if time.monotonic() - started > ASSIGNMENT_WAIT_S:
                return
            last_record = time.monotonic()
            continue
        if records:
            yield records
            count += len(records)
            last_record = time.monotonic()
        if max_records is not None and count >= max_records:
            return
        if idle_ms is not None and (time.monotonic() - last_record) * 1000 >= idle_ms:
            return
        if not follow and caught_up(consumer, ends):
            return


def caught_up(consumer: tidings.Consumer, ends: dict[TopicPartition, int]) -> bool:
    """Whether every assigned partition's position has reached its end offset.

    With nothing assigned yet (the group's other members still own every partition) it
    has not: the caller keeps polling for an assignment.
    """
    assignment = consumer.assignment()
    if not assignment:
        return False
    try:
        return all(consumer.position(tp) >= ends.get(tp, 0) for tp in assignment)
    except ConfigurationError:  # a partition assigned since the last poll has no position yet
        return False


def write_records(out: BinaryIO, records: list[Record], fmt: str) -> None:
    """Write records to `out` in `fmt` and flush, so a pipe sees them at once."""
    if fmt == "raw":
        out.write(b"".join((r.value or b"") + b"\n" for r in records))
    else:
        out.write("".join(json_line(record_to_json(r)) + "\n" for r in records).encode())
    out.flush()


@contextmanager
def stop_on_signals() -> Iterator[threading.Event]:
    """An event set by the first SIGINT or SIGTERM; a second one interrupts at once."""
    stop = threading.Event()

    def handler(signum: int, frame: FrameType | None) -> None:
        if stop.is_set():
            raise KeyboardInterrupt
        stop.set()

    if threading.current_thread() is not threading.main_thread():
        yield stop  # Python lets only the main thread set signal handlers
        return
    previous = {sig: signal.signal(sig, handler) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield stop
    finally:
        for sig, old in previous.items():
            signal.signal(sig, old)
