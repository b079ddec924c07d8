"""`tidings cdc ...`: capture a database's changes onto topics.

tidings cdc sqlite add DB TABLE...      install capture triggers (a snapshot follows)
tidings cdc sqlite remove DB [TABLE...] remove them (all tables when none are named)
tidings cdc sqlite status DB            captured tables and their pending changes
tidings cdc run CONFIG                  relay changes until Ctrl-C or SIGTERM
"""

from __future__ import annotations

import asyncio
import signal
import time
import tomllib
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeAlias

import click

from tidings.api.connect import connect_async
from tidings.cdc import sqlite as sqlite_cdc
from tidings.cli.common import Options, json_option
from tidings.cli.output import echo_json, echo_table
from tidings.cli.progress import Progress
from tidings.core.errors import ConfigurationError

if TYPE_CHECKING:
    from tidings.cdc.postgres import PostgresSource

Source: TypeAlias = "sqlite_cdc.SqliteSource | PostgresSource"
PROGRESS_S = 1.0


@click.group()
def cdc() -> None:
    """Change data capture: database changes as records on topics."""


@cdc.group()
def sqlite() -> None:
    """Capture a SQLite database through triggers."""


def _show(statuses: list[sqlite_cdc.TableStatus], as_json: bool) -> None:
    if as_json:
        echo_json(
            [
                {
                    "table": s.table,
                    "columns": s.columns,
                    "primary_key": s.primary_key,
                    "snapshot_done": s.snapshot_done,
                    "pending": s.pending,
                }
                for s in statuses
            ]
        )
        return
    echo_table(
        ("TABLE", "PRIMARY KEY", "SNAPSHOT", "PENDING"),
        [
            (s.table, ",".join(s.primary_key), "done" if s.snapshot_done else "to do", s.pending)
            for s in statuses
        ],
    )


@sqlite.command("add")
@click.argument("database", type=click.Path(dir_okay=False))
@click.argument("tables", nargs=-1, required=True)
@json_option
def add(database: str, tables: tuple[str, ...], as_json: bool) -> None:
    """Install capture triggers on TABLES (again: refresh them after a schema change)."""
    _show(sqlite_cdc.add(database, tables), as_json)


@sqlite.command("remove")
@click.argument("database", type=click.Path(dir_okay=False))
@click.argument("tables", nargs=-1)
def remove(database: str, tables: tuple[str, ...]) -> None:
    """Remove the capture triggers (of TABLES, or of every table) and pending changes."""
    gone = sqlite_cdc.remove(database, tables or None)
    click.echo(f"capture removed from {', '.join(gone)}" if gone else "nothing was captured")


@sqlite.command("status")
@click.argument("database", type=click.Path(dir_okay=False))
@json_option
def status(database: str, as_json: bool) -> None:
    """Show the captured tables and their changes not yet relayed."""
    _show(sqlite_cdc.status(database), as_json)


@cdc.command()
@click.argument("config", type=click.Path(dir_okay=False, exists=True))
@click.pass_context
def run(ctx: click.Context, config: str) -> None:
    """Relay captured changes to topics, as CONFIG (TOML) says, until Ctrl-C or SIGTERM.

    \b
    url = "sqlite://.tidings/tidings.db"   # the bus (default: the global --url)
    [sqlite]
    database = "shop.db"
    tables = ["orders", "customers"]       # installed (or refreshed) at start
    prefix = "shop"                        # topics shop.main.<table>
    \b
    [postgres]                             # instead of [sqlite]
    dsn = "host=127.0.0.1 dbname=shop user=app"
    tables = ["public.orders"]
    prefix = "shop"                        # topics shop.public.<table>
    slot = "tidings"                       # and publication = "tidings"
    transaction_topic = "shop.transaction" # optional: BEGIN/END of every transaction
    """
    settings = _load(config)
    options = ctx.find_object(Options)
    url = settings.get("url") or (options.url if options else None)
    source: Source
    if "postgres" in settings:
        from tidings.cdc.postgres import PostgresSource

        pg = settings["postgres"]
        known = ("dsn", "tables", "prefix", "slot", "publication", "transaction_topic")
        source = PostgresSource(**{k: v for k, v in pg.items() if k in known})
        progress = _pg_progress
    else:
        lite = settings["sqlite"]
        tables = lite.get("tables", [])
        if tables:
            sqlite_cdc.add(lite["database"], tables)
        source = sqlite_cdc.SqliteSource(lite["database"], prefix=lite.get("prefix"))
        progress = _sqlite_progress
    asyncio.run(_relay(url, source, progress))


async def _relay(url: str | None, source: Source, progress: Callable[[Any], str]) -> None:
    snapshots = Progress()
    source.on_snapshot = lambda table, done, total: snapshots.update(
        f"snapshot {table}", done, total, "rows"
    )
    bus = await connect_async(url)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    relay = asyncio.create_task(source.run(bus, stop))
    click.echo("relaying changes (Ctrl-C or SIGTERM stops)")
    try:
        shown = -1
        while not relay.done():
            await asyncio.wait({relay}, timeout=PROGRESS_S)
            if source.relayed != shown and not snapshots.drawing:
                behind = await asyncio.to_thread(progress, source)
                click.echo(
                    f"{time.strftime('%H:%M:%S')} relayed {source.relayed} changes, {behind}"
                )
                shown = source.relayed
        await relay  # raises what stopped it
    finally:
        stop.set()
        await asyncio.gather(relay, return_exceptions=True)
        snapshots.close()
        await bus.close()


def _sqlite_progress(source: sqlite_cdc.SqliteSource) -> str:
    return f"{sum(s.pending for s in sqlite_cdc.status(source.database))} pending"


def _pg_progress(source: Any) -> str:
    return f"slot lag {source.lag_bytes / 1e6:.1f} MB of WAL"


def _load(path: str) -> dict[str, Any]:
    try:
        settings = tomllib.loads(Path(path).read_text())
    except (OSError, tomllib.TOMLDecodeError) as e:
        raise ConfigurationError(f"cannot read the CDC configuration {path}: {e}") from e
    if "postgres" in settings:
        if not {"dsn", "tables"} <= set(settings["postgres"]):
            raise ConfigurationError(f'{path}: [postgres] needs dsn = "..." and tables = [...]')
    elif "sqlite" not in settings or "database" not in settings["sqlite"]:
        raise ConfigurationError(
            f'{path} names no source: add a [sqlite] section with database = "PATH", '
            f"or a [postgres] section with dsn and tables"
        )
    return settings
