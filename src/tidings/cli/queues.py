"""`tidings queues ...`: list, describe, peek at, redrive and purge queues (share groups).

A queue's dead-letter topic is not stored with its share group: the commands take
`--dead-letter-topic`, and default to `TOPIC.dlq` when such a topic exists.
"""

from __future__ import annotations

import sys

import click

import tidings
from tidings.api.jsonform import depth_to_json, json_line, queue_to_json, record_to_json
from tidings.cli.common import F, confirm, format_option, json_option, open_bus, yes_option
from tidings.cli.output import echo_fields, echo_json, echo_table
from tidings.core.errors import ConfigurationError
from tidings.core.records import DLQ_SUFFIX


def queue_options(fn: F) -> F:
    """Add --group (required) and --dead-letter-topic."""
    fn = click.option(
        "--dead-letter-topic",
        "dead_letter_topic",
        metavar="TOPIC",
        help=f"The queue's dead-letter topic (default: TOPIC{DLQ_SUFFIX} if it exists).",
    )(fn)
    return click.option("--group", "-g", required=True, help="The share group of the queue.")(fn)


def open_queue(
    bus: tidings.Bus, topic: str, group: str, dead_letter_topic: str | None
) -> tidings.Queue:
    """The existing queue of `group` over `topic`; refuses unknown topics and groups."""
    names = {t.name for t in bus.list_topics()}
    if topic not in names:
        raise tidings.TopicNotFoundError(topic)
    if (group, topic) not in bus.list_queues():
        raise click.ClickException(
            f"share group {group!r} has never read topic {topic!r}; "
            f"`tidings queues list` shows the queues"
        )
    if dead_letter_topic is None:
        default = f"{topic}{DLQ_SUFFIX}"
        dead_letter_topic = default if default in names else None
    elif dead_letter_topic not in names:
        raise tidings.TopicNotFoundError(dead_letter_topic)
    return bus.queue(topic, group=group, dead_letter_topic=dead_letter_topic)


@click.group()
def queues() -> None:
    """List, describe, peek at, redrive and purge queues (share groups)."""


@queues.command("list")
@json_option
def list_command(as_json: bool) -> None:
    """List every queue: share group, topic and depth."""
    with open_bus() as bus:
        names = {t.name for t in bus.list_topics()}
        docs = []
        for group, topic in bus.list_queues():
            dlq = f"{topic}{DLQ_SUFFIX}"
            queue = bus.queue(topic, group=group, dead_letter_topic=dlq if dlq in names else None)
            dead = queue.dead_letters() if dlq in names else None
            docs.append(depth_to_json(group, topic, queue.depth(), dead))
    if as_json:
        echo_json(docs)
        return
    keys = ("group", "topic", "available", "in_flight", "delayed", "dead_letters")
    echo_table([k.upper() for k in keys], [[d[k] for k in keys] for d in docs])


@queues.command()
@click.argument("topic")
@queue_options
@json_option
def describe(topic: str, group: str, dead_letter_topic: str | None, as_json: bool) -> None:
    """Show a queue's depth per partition and its dead letters."""
    with open_bus() as bus:
        queue = open_queue(bus, topic, group, dead_letter_topic)
        depths = queue.depth()
        dlq = queue.dead_letter_topic
        dead = queue.dead_letters() if dlq is not None else None
    doc = queue_to_json(group, topic, depths, dead, dlq)
    if as_json:
        echo_json(doc)
        return
    echo_fields(
        [
            (k, doc[k])
            for k in (
                *("group", "topic", "available", "in_flight", "delayed"),
                *("dead_letter_topic", "dead_letters"),
            )
        ]
    )
    click.echo()
    echo_table(
        ["PARTITION", "AVAILABLE", "IN_FLIGHT", "DELAYED"],
        [[d.partition, d.available, d.in_flight, d.delayed] for d in depths],
    )


@queues.command()
@click.argument("topic")
@queue_options
@click.option(
    "--max", "max_records", type=click.IntRange(min=0), default=10, show_default=True, metavar="N"
)
@format_option
def peek(topic: str, group: str, dead_letter_topic: str | None, max_records: int, fmt: str) -> None:
    """Print the next jobs a receive would get, without locking them."""
    with open_bus() as bus:
        records = open_queue(bus, topic, group, dead_letter_topic).peek(max_records)
    out = sys.stdout.buffer
    if fmt == "raw":
        out.write(b"".join((r.value or b"") + b"\n" for r in records))
    else:
        out.write("".join(json_line(record_to_json(r)) + "\n" for r in records).encode())
    out.flush()


@queues.command()
@click.argument("topic")
@queue_options
@click.option("--max", "max_records", type=click.IntRange(min=0), metavar="N", help="At most N.")
@json_option
def redrive(
    topic: str, group: str, dead_letter_topic: str | None, max_records: int | None, as_json: bool
) -> None:
    """Copy the queue's dead letters back to TOPIC, each only once."""
    with open_bus() as bus:
        queue = open_queue(bus, topic, group, dead_letter_topic)
        dlq = queue.dead_letter_topic
        if dlq is None:
            raise ConfigurationError(
                f"topic {topic!r} has no dead-letter topic {topic}{DLQ_SUFFIX}; "
                f"name it with --dead-letter-topic"
            )
        count = queue.redrive(max_records)
    if as_json:
        echo_json({"group": group, "topic": topic, "dead_letter_topic": dlq, "redriven": count})
    else:
        click.echo(f"redrove {count} dead letter(s) from {dlq!r} to {topic!r}")


@queues.command()
@click.argument("topic")
@queue_options
@yes_option
@json_option
def purge(topic: str, group: str, dead_letter_topic: str | None, yes: bool, as_json: bool) -> None:
    """Settle every job of the queue not locked to a consumer; the records stay in TOPIC."""
    with open_bus() as bus:
        queue = open_queue(bus, topic, group, dead_letter_topic)
        confirm(
            f"Purge every waiting job of {topic!r} for group {group!r}?",
            f"purging queue {topic!r} (group {group!r})",
            yes,
        )
        count = queue.purge()
    if as_json:
        echo_json({"group": group, "topic": topic, "purged": count})
    else:
        click.echo(f"purged {count} job(s) from {topic!r} for group {group!r}")
