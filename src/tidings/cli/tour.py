"""`tidings tour`: a short guided walk through topics, keys, groups and lag."""

from __future__ import annotations

import time

import click

import tidings
from tidings.cli.common import open_bus
from tidings.cli.output import styled
from tidings.core.records import Record

TOPIC = "tour.orders"
GROUP = "tour.billing"
ORDERS = [
    (b"alice", b'{"order": 1, "item": "book"}'),
    (b"bob", b'{"order": 2, "item": "lamp"}'),
    (b"carol", b'{"order": 3, "item": "mug"}'),
    (b"alice", b'{"order": 4, "item": "pen"}'),
    (b"bob", b'{"order": 5, "item": "desk"}'),
    (b"alice", b'{"order": 6, "item": "ink"}'),
]
READ_DEADLINE_S = 5.0


def step(number: int, title: str, *explanation: str) -> None:
    """Print a numbered step with its explanation."""
    click.echo()
    click.echo(styled(f"{number}. {title}", bold=True))
    for line in explanation:
        click.echo(f"   {line}")


def show_lag(bus: tidings.Bus, when: str) -> None:
    """Print the group's total lag."""
    click.echo(f"   lag of group {GROUP!r} {when}: {bus.describe_group(GROUP).lag}")


def describe_record(record: Record) -> str:
    """A record as one line of the tour."""
    key = (record.key or b"").decode()
    value = (record.value or b"").decode()
    return f"{record.topic}[{record.partition}]@{record.offset}  {key:<6} {value}"


@click.command()
def tour() -> None:
    """A guided tour: a topic, keyed records, a consumer group and its lag."""
    with open_bus() as bus:
        click.echo(f"A tour of tidings on {bus.engine.url}")

        step(
            1,
            f"Create the topic {TOPIC!r} with 3 partitions (if it does not exist).",
            "A topic is a set of partitions; each partition is an append-only log.",
        )
        spec = bus.create_topic(TOPIC, 3, exist_ok=True)
        click.echo(f"   {spec.name}: {spec.partitions} partitions")

        step(
            2,
            f"Point the group {GROUP!r} at the end of the log.",
            "A group remembers a committed offset per partition; here they move to the",
            "end, so this run of the tour counts only the records it produces.",
        )
        bus.reset_offsets(GROUP, TOPIC, to="latest")
        show_lag(bus, "now")

        step(
            3,
            f"Produce {len(ORDERS)} keyed records.",
            "Records with the same key go to the same partition, so their order is kept.",
        )
        for key, value in ORDERS:
            meta = bus.publish(TOPIC, value, key=key)
            click.echo(f"   {key.decode():<6} -> {meta.topic}[{meta.partition}]@{meta.offset}")
        show_lag(bus, "after producing")

        step(
            4,
            f"Consume them as a member of {GROUP!r}.",
            "The group assigns partitions to its members; reading does not commit.",
        )
        with bus.consumer(TOPIC, group=GROUP, auto_commit=False) as consumer:
            records: list[Record] = []
            deadline = time.monotonic() + READ_DEADLINE_S
            while len(records) < len(ORDERS) and time.monotonic() < deadline:
                records += consumer.poll(timeout_ms=200)
            for record in sorted(records, key=lambda r: (r.partition, r.offset)):
                click.echo(f"   {describe_record(record)}")
            show_lag(bus, "before the commit")

            step(
                5,
                "Commit.",
                "The committed offsets now point past these records: a restarted member",
                "resumes after them, and the lag drops to zero.",
            )
            consumer.commit()
            show_lag(bus, "after the commit")

    click.echo()
    click.echo("Look further:")
    click.echo(f"   tidings topics describe {TOPIC}")
    click.echo(f"   tidings groups describe {GROUP}")
    click.echo(f"   tidings consume {TOPIC} --from-beginning --format json")
