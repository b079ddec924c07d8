"""`tidings groups ...`: list, describe, reset offsets of and delete consumer groups."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import click

import tidings
from tidings.cli.common import confirm, json_option, open_bus, yes_option
from tidings.cli.output import echo_fields, echo_json, echo_table
from tidings.core.errors import PartitionNotFoundError

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def group_json(group: tidings.GroupDescription) -> dict[str, Any]:
    """A described group as JSON: state, members and per-partition progress."""
    return {
        "group": group.group,
        "state": group.state,
        "generation": group.generation,
        "strategy": group.strategy,
        "lag": group.lag,
        "members": [
            {
                "member_id": m.member_id,
                "client_id": m.client_id,
                "topics": list(m.topics),
                "partitions": [{"topic": t, "partition": p} for t, p in m.assignment],
            }
            for m in group.members
        ],
        "partitions": [
            {
                "topic": p.topic,
                "partition": p.partition,
                "committed": p.committed,
                "end_offset": p.end_offset,
                "lag": p.lag,
                "owner": p.owner,
            }
            for p in group.partitions
        ],
    }


@click.group()
def groups() -> None:
    """List, describe, reset offsets of and delete consumer groups."""


@groups.command("list")
@json_option
def list_groups(as_json: bool) -> None:
    """List every consumer group with its state, members and total lag."""
    with open_bus() as bus:
        described = [bus.describe_group(name) for name in bus.list_groups()]
    rows = [[g.group, g.state, len(g.members), g.lag] for g in described]
    if as_json:
        keys = ("group", "state", "members", "lag")
        echo_json([dict(zip(keys, row, strict=True)) for row in rows])
    else:
        echo_table(["GROUP", "STATE", "MEMBERS", "LAG"], rows)


@groups.command()
@click.argument("group")
@json_option
def describe(group: str, as_json: bool) -> None:
    """Show a group's state, members and per-partition committed offset, end and lag."""
    with open_bus() as bus:
        description = bus.describe_group(group)
    doc = group_json(description)
    if as_json:
        echo_json(doc)
        return
    echo_fields([(k, doc[k]) for k in ("group", "state", "generation", "strategy", "lag")])
    if description.members:
        click.echo()
        echo_table(
            ["MEMBER", "CLIENT", "PARTITIONS"],
            [
                [m.member_id, m.client_id, " ".join(f"{t}[{p}]" for t, p in m.assignment)]
                for m in description.members
            ],
        )
    click.echo()
    echo_table(
        ["TOPIC", "PARTITION", "COMMITTED", "END_OFFSET", "LAG", "OWNER"],
        [
            [p.topic, p.partition, p.committed, p.end_offset, p.lag, p.owner]
            for p in description.partitions
        ],
    )


@groups.command("reset-offsets")
@click.argument("group")
@click.option("--topic", "-t", required=True, help="The topic whose offsets to set.")
@click.option("--to-earliest", is_flag=True, help="The oldest record still stored.")
@click.option("--to-latest", is_flag=True, help="The end: skip every stored record.")
@click.option("--to-offset", type=click.IntRange(min=0), metavar="N", help="Offset N.")
@click.option(
    "--to-datetime",
    metavar="ISO8601",
    help="The first record at or after this time (local time unless it has an offset).",
)
@click.option("--to-timestamp", type=int, metavar="MS", help="The first record at or after MS.")
@click.option(
    "--partition",
    "-p",
    "partitions",
    type=click.IntRange(min=0),
    multiple=True,
    help="Only this partition (repeatable; default: all).",
)
@json_option
def reset_offsets(
    *,
    group: str,
    topic: str,
    to_earliest: bool,
    to_latest: bool,
    to_offset: int | None,
    to_datetime: str | None,
    to_timestamp: int | None,
    partitions: tuple[int, ...],
    as_json: bool,
) -> None:
    """Set GROUP's committed offsets on a topic; the group must have no live members."""
    targets = {
        "--to-earliest": {"to": "earliest"} if to_earliest else None,
        "--to-latest": {"to": "latest"} if to_latest else None,
        "--to-offset": None if to_offset is None else {"offset": to_offset},
        "--to-datetime": None if to_datetime is None else {"timestamp_ms": ms_of(to_datetime)},
        "--to-timestamp": None if to_timestamp is None else {"timestamp_ms": to_timestamp},
    }
    chosen = [(flag, how) for flag, how in targets.items() if how is not None]
    if len(chosen) != 1:
        raise click.UsageError(f"give exactly one of {', '.join(targets)}")
    with open_bus() as bus:
        count = bus.describe_topic(topic).spec.partitions
        for p in partitions:
            if p >= count:
                raise PartitionNotFoundError(topic, p, count)
        offsets = bus.reset_offsets(
            group, topic, partitions=sorted(set(partitions)) or None, **chosen[0][1]
        )
    rows = [[tp.topic, tp.partition, offset] for tp, offset in sorted(offsets.items())]
    if as_json:
        keys = ("topic", "partition", "offset")
        echo_json([dict(zip(keys, row, strict=True)) for row in rows])
    else:
        echo_table(["TOPIC", "PARTITION", "OFFSET"], rows)


def ms_of(text: str) -> int:
    """Milliseconds since the epoch of an ISO 8601 time; without an offset, local time."""
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        raise click.BadParameter(
            f"{text!r} is not an ISO 8601 time, e.g. 2024-05-01T12:00:00Z",
            param_hint="--to-datetime",
        ) from None
    if moment.tzinfo is None:
        moment = moment.astimezone()
    return (moment - EPOCH) // timedelta(milliseconds=1)


@groups.command()
@click.argument("group")
@yes_option
@json_option
def delete(group: str, yes: bool, as_json: bool) -> None:
    """Delete a group with no live members, and its committed offsets."""
    with open_bus() as bus:
        description = bus.describe_group(group)
        confirm(
            f"Delete group {group!r} and its committed offsets?", f"deleting group {group!r}", yes
        )
        bus.delete_group(group)
    if as_json:
        offsets = [
            {"topic": p.topic, "partition": p.partition, "committed": p.committed}
            for p in description.partitions
        ]
        echo_json({"group": group, "deleted": True, "offsets": offsets})
    else:
        click.echo(f"deleted group {group!r}")
