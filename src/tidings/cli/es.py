"""`tidings es ...`: look into an event store, and watch and rebuild projections."""

from __future__ import annotations

import asyncio
import importlib
import json
import os
import sqlite3
import sys
from typing import Any

import click

from tidings import eventsourcing
from tidings.api.jsonform import bytes_to_json
from tidings.cli.common import F, json_option
from tidings.cli.output import echo_json, echo_table
from tidings.core.errors import ConfigurationError
from tidings.eventsourcing.projection import CHECKPOINTS, Projection, ProjectionRunner
from tidings.eventsourcing.storage import HARD_DELETED, SOFT_DELETED, RecordedEvent

DEFAULT_STORE = "sqlite://.tidings/events.db"
STATES = {0: "", SOFT_DELETED: "deleted", HARD_DELETED: "tombstoned"}


def store_option(fn: F) -> F:
    """--store URL (or $TIDINGS_EVENTS)."""
    return click.option(
        "--store",
        "store_url",
        metavar="URL",
        envvar="TIDINGS_EVENTS",
        show_envvar=True,
        default=DEFAULT_STORE,
        show_default=True,
        help="The event store: sqlite://PATH or memory://.",
    )(fn)


@click.group()
def es() -> None:
    """Event sourcing: streams, events and projections."""


@es.command()
@store_option
@click.option("--prefix", default="", help="Only streams whose id starts with this.")
@click.option("--limit", type=click.IntRange(min=1), default=1000, show_default=True)
@json_option
def streams(store_url: str, prefix: str, limit: int, as_json: bool) -> None:
    """List streams with their version."""
    with eventsourcing.connect(store_url) as store:
        found = store.streams(prefix, limit)
    if as_json:
        echo_json(
            [{"stream": s, "version": v, "state": STATES[st] or "live"} for s, v, st in found]
        )
    else:
        echo_table(("STREAM", "VERSION", "STATE"), [(s, v, STATES[st]) for s, v, st in found])


def event_json(e: RecordedEvent) -> dict[str, Any]:
    """An event as JSON (its data as JSON when it is JSON, else as the CLI shows bytes)."""
    try:
        data: Any = json.loads(e.data)
    except ValueError:
        data = bytes_to_json(e.data)
    return {
        "id": e.id,
        "stream": e.stream_id,
        "version": e.version,
        "position": e.position,
        "type": e.type,
        "data": data,
        "metadata": e.metadata,
        "recorded_ms": e.recorded_ms,
    }


@es.command()
@store_option
@click.argument("stream", required=False)
@click.option("--all", "all_events", is_flag=True, help="Read the global order instead.")
@click.option("--from", "start", type=int, help="A version (or, with --all, a position).")
@click.option("--backward", is_flag=True, help="From the end (a stream only).")
@click.option("--max", "max_count", type=click.IntRange(min=1), default=100, show_default=True)
def read(
    *,
    store_url: str,
    stream: str | None,
    all_events: bool,
    start: int | None,
    backward: bool,
    max_count: int,
) -> None:
    """Print events of STREAM (or of every stream, --all), one JSON object per line."""
    if (stream is None) == (not all_events):
        raise click.UsageError("give a STREAM, or --all for the global order")
    with eventsourcing.connect(store_url) as store:
        if stream is None:
            events = store.read_all(start or 1, max_count)
        else:
            events = store.read_stream(stream, start, backward=backward, max_count=max_count)
    for e in events:
        click.echo(json.dumps(event_json(e), ensure_ascii=False))


@es.command()
@store_option
@click.option(
    "--read-model",
    "read_model",
    required=True,
    metavar="PATH",
    help="The SQLite database the projections write to.",
)
@json_option
def projections(store_url: str, read_model: str, as_json: bool) -> None:
    """Show each projection's position and lag behind the store."""
    with eventsourcing.connect(store_url) as store:
        head = store.last_position()
    conn = sqlite3.connect(read_model)
    try:
        rows = conn.execute(f"SELECT name, position FROM {CHECKPOINTS} ORDER BY name").fetchall()
    except sqlite3.OperationalError:
        rows = []
    finally:
        conn.close()
    docs = [
        {"projection": n, "position": p, "head": head, "lag": max(0, head - p)} for n, p in rows
    ]
    if as_json:
        echo_json(docs)
    else:
        echo_table(
            ("PROJECTION", "POSITION", "HEAD", "LAG"),
            [(d["projection"], d["position"], d["head"], d["lag"]) for d in docs],
        )


@es.command()
@store_option
@click.argument("projection")
@click.option(
    "--read-model",
    "read_model",
    required=True,
    metavar="PATH",
    help="The SQLite database the projection writes to.",
)
def rebuild(store_url: str, projection: str, read_model: str) -> None:
    """Empty a projection's read model and apply every event again.

    PROJECTION is MODULE:CLASS, a Projection subclass importable from here.
    """
    cls = _projection_class(projection)

    async def run() -> int:
        store = await eventsourcing.connect_async(store_url)
        runner = ProjectionRunner(store, cls(), lambda: sqlite3.connect(read_model))
        try:
            return await runner.rebuild()
        finally:
            await runner.close()
            await store.close()

    click.echo(f"{cls.name}: {asyncio.run(run())} events applied")


def _projection_class(spec: str) -> type[Projection]:
    module_name, _, name = spec.partition(":")
    if "" not in sys.path and os.getcwd() not in sys.path:
        sys.path.insert(0, os.getcwd())  # as `python -m` does: the user's modules are here
    try:
        cls = getattr(importlib.import_module(module_name), name)
    except (ImportError, AttributeError, ValueError) as e:
        raise ConfigurationError(
            f"cannot import projection {spec!r}: {e}; give MODULE:CLASS on the Python path"
        ) from e
    if not (isinstance(cls, type) and issubclass(cls, Projection)):
        raise ConfigurationError(f"{spec} is not a Projection subclass")
    return cls
