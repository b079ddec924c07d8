"""`tidings topics ...`: create, list, describe, alter and delete topics."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import click

from tidings.api.bus import TopicDescription
from tidings.cli.common import F, confirm, json_option, open_bus, yes_option
from tidings.cli.output import echo_fields, echo_json, echo_table
from tidings.core.errors import ConfigurationError
from tidings.core.records import (
    CLEANUP_POLICIES,
    KAFKA_NAMES,
    TopicConfig,
    TopicSpec,
    kafka_name,
)


def setting_options(fn: F) -> F:
    """Add the topic setting flags shared by `create` and `alter`."""
    options = [
        click.option(
            "--retention-ms",
            type=int,
            metavar="MS",
            help="Delete records older than this; -1 keeps them forever.",
        ),
        click.option(
            "--retention-bytes",
            type=int,
            metavar="B",
            help="Delete a partition's oldest records beyond this size; -1 for no limit.",
        ),
        click.option(
            "--cleanup-policy",
            type=click.Choice(CLEANUP_POLICIES),
            help="delete: by retention; compact: keep the latest record per key.",
        ),
        click.option("--max-message-bytes", type=int, metavar="B", help="Largest record accepted."),
        click.option(
            "--config",
            "config",
            multiple=True,
            metavar="KEY=VALUE",
            help="Any topic setting under its Kafka name, e.g. retention.ms=60000 or "
            f"min.compaction.lag.ms=0 (repeatable); known: {', '.join(KAFKA_NAMES)}.",
        ),
    ]
    for option in reversed(options):
        fn = option(fn)
    return fn


def parse_settings(config: Sequence[str], **named: int | str | None) -> dict[str, Any]:
    """Topic settings from --config pairs and the named flags, checked before any change."""
    pairs: list[tuple[str, object]] = []
    for pair in config:
        name, sep, text = pair.partition("=")
        if not sep:
            raise ConfigurationError(
                f"--config takes KEY=VALUE, e.g. retention.ms=60000, not {pair!r}"
            )
        pairs.append((name, text))
    pairs += [(kafka_name(key), value) for key, value in named.items() if value is not None]
    return TopicConfig.changes_from_kafka(pairs)


def topic_json(spec: TopicSpec) -> dict[str, Any]:
    """A topic's name, partition count and settings (Kafka's names) as JSON."""
    return {"name": spec.name, "partitions": spec.partitions, "config": spec.config.to_kafka()}


def description_json(description: TopicDescription) -> dict[str, Any]:
    """A described topic as JSON: settings plus each partition's extent."""
    return {
        **topic_json(description.spec),
        "records": description.records,
        "size_bytes": sum(p.size_bytes for p in description.partitions),
        "partition_states": [p._asdict() for p in description.partitions],
    }


LISTED = ("cleanup.policy", "retention.ms", "retention.bytes")
"""The settings `topics list` shows as columns."""


@click.group()
def topics() -> None:
    """Create, list, describe, alter and delete topics."""


@topics.command()
@click.argument("name")
@click.option("--partitions", type=click.IntRange(min=1), default=1, show_default=True, metavar="N")
@setting_options
@click.option("--if-not-exists", is_flag=True, help="Succeed, unchanged, if the topic exists.")
@json_option
def create(
    *,
    name: str,
    partitions: int,
    config: tuple[str, ...],
    if_not_exists: bool,
    as_json: bool,
    **named: Any,
) -> None:
    """Create a topic."""
    changes = parse_settings(config, **named)
    with open_bus(create=True) as bus:
        existed = if_not_exists and any(t.name == name for t in bus.list_topics())
        spec = bus.create_topic(name, partitions, exist_ok=if_not_exists, **changes)
    if as_json:
        echo_json({**topic_json(spec), "created": not existed})
    elif existed:
        click.echo(f"topic {name!r} already exists ({spec.partitions} partitions); unchanged")
    else:
        click.echo(f"created topic {name!r} with {spec.partitions} partition(s)")


@topics.command("list")
@json_option
def list_topics(as_json: bool) -> None:
    """List every topic."""
    with open_bus() as bus:
        specs = bus.list_topics()
    if as_json:
        echo_json([topic_json(s) for s in specs])
        return
    echo_table(
        ["NAME", "PARTITIONS", *(k.upper() for k in LISTED)],
        [[s.name, s.partitions, *(s.config.to_kafka()[k] for k in LISTED)] for s in specs],
    )


@topics.command()
@click.argument("name")
@json_option
def describe(name: str, as_json: bool) -> None:
    """Show a topic's settings and each partition's offsets and size."""
    with open_bus() as bus:
        description = bus.describe_topic(name)
    doc = description_json(description)
    if as_json:
        echo_json(doc)
        return
    echo_fields(
        [
            ("name", doc["name"]),
            ("partitions", doc["partitions"]),
            ("records", doc["records"]),
            ("size_bytes", doc["size_bytes"]),
            *doc["config"].items(),
        ]
    )
    click.echo()
    echo_table(
        ["PARTITION", "START_OFFSET", "END_OFFSET", "RECORDS", "SIZE_BYTES"],
        [
            [p.partition, p.start_offset, p.end_offset, p.end_offset - p.start_offset, p.size_bytes]
            for p in description.partitions
        ],
    )


@topics.command()
@click.argument("name")
@click.option(
    "--partitions",
    type=click.IntRange(min=1),
    metavar="N",
    help="Grow the topic to N partitions (partitions are never removed).",
)
@setting_options
@json_option
def alter(
    *, name: str, partitions: int | None, config: tuple[str, ...], as_json: bool, **named: Any
) -> None:
    """Grow a topic or change its settings."""
    changes = parse_settings(config, **named)
    if partitions is None and not changes:
        raise click.UsageError("nothing to change: give --partitions or a setting")
    with open_bus() as bus:
        before = bus.describe_topic(name).spec
        if partitions is not None:
            bus.add_partitions(name, partitions)
        if changes:
            bus.alter_topic(name, **changes)
        after = bus.describe_topic(name).spec
    old, new = before.config.to_kafka(), after.config.to_kafka()
    changed: dict[str, tuple[int | str, int | str]] = {}
    if partitions is not None:
        changed["partitions"] = (before.partitions, after.partitions)
    changed |= {k: (old[k], new[k]) for k in map(kafka_name, changes)}
    if as_json:
        echo_json(
            {
                **topic_json(after),
                "changes": {k: {"before": b, "after": a} for k, (b, a) in changed.items()},
            }
        )
        return
    for key, (was, now) in changed.items():
        click.echo(f"{key}: {was} -> {now}")


@topics.command()
@click.argument("name")
@yes_option
@json_option
def delete(name: str, yes: bool, as_json: bool) -> None:
    """Delete a topic and all its records."""
    with open_bus() as bus:
        description = bus.describe_topic(name)
        confirm(
            f"Delete topic {name!r} and its {description.records} record(s)?",
            f"deleting topic {name!r}",
            yes,
        )
        bus.delete_topic(name)
    if as_json:
        echo_json(
            {
                "name": name,
                "partitions": description.spec.partitions,
                "records": description.records,
                "deleted": True,
            }
        )
    else:
        click.echo(f"deleted topic {name!r}")
