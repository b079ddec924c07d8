"""Projections: read models built from the event store, effectively exactly once.

    class Balances(Projection):
        name = "balances"
        category = "account"

        def setup(self, conn):
            conn.execute("CREATE TABLE IF NOT EXISTS balances (id TEXT PRIMARY KEY, amount INT)")

        def reset(self, conn):
            conn.execute("DELETE FROM balances")

        @handles("Deposited")
        def deposited(self, conn, event):
            ...

    runner = ProjectionRunner(store, Balances(), lambda: sqlite3.connect("read.db"))
    await runner.run(stop_event)

A runner follows the store from the projection's checkpoint (catch-up, then live) and
applies each batch of events in one transaction of the read model's own database
(sqlite3 or psycopg), together with the new checkpoint: after a crash it resumes exactly
where the read model is, so no event is applied twice or skipped. `rebuild` empties the
read model and starts it again from the first event.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, ClassVar, TypeVar

from tidings.eventsourcing.storage import RecordedEvent
from tidings.eventsourcing.store import PAGE, AsyncEventStore, Follower

F = TypeVar("F", bound=Callable[..., Any])
T = TypeVar("T")
CHECKPOINTS = "tidings_projections"


def handles(*event_types: str) -> Callable[[F], F]:
    """Mark a method `(self, conn, event)` as the handler of these event types."""

    def mark(method: F) -> F:
        method.__tidings_handles__ = event_types  # type: ignore[attr-defined]
        return method

    return mark


class Projection:
    """A read model: its tables, and handlers that apply events to them."""

    name: ClassVar[str] = ""
    """The checkpoint's name (default: the class name)."""
    category: ClassVar[str | None] = None
    """Follow only this stream category (None: every event)."""
    _handlers: ClassVar[dict[str, Callable[..., None]]] = {}

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        handlers = dict(getattr(cls, "_handlers", {}))
        for value in vars(cls).values():
            for event_type in getattr(value, "__tidings_handles__", ()):
                handlers[event_type] = value
        cls._handlers = handlers
        if not cls.name:
            cls.name = cls.__name__

    def setup(self, conn: Any) -> None:
        """Create the read model's tables if they are missing."""

    def reset(self, conn: Any) -> None:
        """Empty the read model before a rebuild."""

    def apply(self, conn: Any, event: RecordedEvent) -> None:
        """Apply one event (events without a handler are passed over)."""
        handler = self._handlers.get(event.type)
        if handler is not None:
            handler(self, conn, event)


@dataclass(frozen=True)
class ProjectionStatus:
    """Where a projection is."""

    name: str
    position: int
    """The global position of the last event applied (0: none)."""
    head: int
    """The store's last position."""

    @property
    def lag(self) -> int:
        """Events stored and not yet applied (of every category)."""
        return max(0, self.head - self.position)


class ProjectionRunner:
    """Keeps one projection's read model up to date."""

    def __init__(
        self, store: AsyncEventStore, projection: Projection, connect: Callable[[], Any]
    ) -> None:
        self.store = store
        self.projection = projection
        self._connect = connect
        self._conn: Any = None
        self._thread = ThreadPoolExecutor(1, thread_name_prefix="tidings-projection")

    async def _call(self, fn: Callable[..., T], *args: Any) -> T:
        return await asyncio.get_running_loop().run_in_executor(self._thread, fn, *args)

    async def run(self, stop: asyncio.Event | None = None) -> None:
        """Apply events as they come, until `stop` is set (or forever)."""
        stop = stop or asyncio.Event()
        position = await self._call(self._checkpoint)
        events = Follower(self.store, position + 1, self.projection.category).start()
        try:
            while not stop.is_set():
                batch = await events.take(0.25)  # what came meanwhile: one transaction
                if batch:
                    await self._call(self._apply, batch)
        finally:
            await events.close()

    async def catch_up(self) -> int:
        """Apply every event stored now; how many were applied."""
        position = await self._call(self._checkpoint)
        head = await self.store.last_position()  # read first: all up to it is visible
        applied = 0
        while page := await self.store.read_all(
            position + 1, PAGE, category=self.projection.category
        ):
            await self._call(self._apply, page)
            applied += len(page)
            position = page[-1].position
        if position < head:  # the rest were other categories' events
            await self._call(self._apply, [], head)
        return applied

    async def rebuild(self) -> int:
        """Empty the read model and apply every event again; how many."""
        await self._call(self._reset)
        return await self.catch_up()

    async def status(self) -> ProjectionStatus:
        """The projection's checkpoint and the store's head."""
        position = await self._call(self._checkpoint)
        return ProjectionStatus(self.projection.name, position, await self.store.last_position())

    async def close(self) -> None:
        """Close the read model's connection."""
        await self._call(self._disconnect)
        self._thread.shutdown()

    # -- on the runner's thread ------------------------------------------------------

    def _db(self) -> Any:
        if self._conn is None:
            self._conn = self._connect()
            self._conn.execute(
                f"CREATE TABLE IF NOT EXISTS {CHECKPOINTS} (name TEXT PRIMARY KEY, "
                "position BIGINT NOT NULL, updated_ms BIGINT NOT NULL)"
            )
            self.projection.setup(self._conn)
            self._conn.commit()
        return self._conn

    def _mark(self) -> str:
        return "%s" if type(self._db()).__module__.startswith("psycopg") else "?"

    def _checkpoint(self) -> int:
        conn = self._db()
        row = conn.execute(
            f"SELECT position FROM {CHECKPOINTS} WHERE name = {self._mark()}",
            (self.projection.name,),
        ).fetchone()
        conn.commit()
        return int(row[0]) if row else 0

    def _apply(self, events: list[RecordedEvent], position: int | None = None) -> None:
        """One transaction: the events' changes and the checkpoint after them."""
        conn, m = self._db(), self._mark()
        position = events[-1].position if position is None else position
        try:
            for event in events:
                self.projection.apply(conn, event)
            conn.execute(
                f"INSERT INTO {CHECKPOINTS} (name, position, updated_ms) VALUES ({m}, {m}, {m}) "
                "ON CONFLICT (name) DO UPDATE SET position = excluded.position, "
                "updated_ms = excluded.updated_ms",
                (self.projection.name, position, time.time_ns() // 1_000_000),
            )
        except BaseException:
            conn.rollback()
            raise
        conn.commit()

    def _reset(self) -> None:
        conn, m = self._db(), self._mark()
        try:
            self.projection.reset(conn)
            conn.execute(f"DELETE FROM {CHECKPOINTS} WHERE name = {m}", (self.projection.name,))
        except BaseException:
            conn.rollback()
            raise
        conn.commit()

    def _disconnect(self) -> None:
        if self._conn is not None:
            with contextlib.suppress(Exception):
                self._conn.close()
            self._conn = None
