"""The idempotent inbox: a consumer's side effects and the message id, in one transaction.

    with inbox(conn).receive(record) as fresh:
        if fresh:
            conn.execute("UPDATE accounts SET ...")   # the side effects, same connection

`receive` records the message's id in the inbox table of the consumer's own database
(sqlite3 or psycopg connection); `fresh` is False when that id is already there, i.e. the
record was handled before and is a redelivery. Leaving the block commits the id together
with the side effects; an exception rolls both back, so the record will be handled again.

The id is the record's `id` header (the outbox sets it) or else topic/partition/offset.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from tidings.core.records import Record

TABLE = "tidings_inbox"


def message_id(record: Record) -> str:
    """The id a record is de-duplicated by."""
    header = record.header("id")
    if header:
        return header.decode(errors="replace")
    return f"{record.topic}/{record.partition}/{record.offset}"


class Inbox:
    """Remembers handled message ids in the consumer's database."""

    def __init__(self, conn: Any, table: str = TABLE) -> None:
        self.conn = conn
        self.table = table
        self._mark = "%s" if type(conn).__module__.startswith("psycopg") else "?"
        conn.execute(
            f"CREATE TABLE IF NOT EXISTS {table} "
            "(message_id TEXT PRIMARY KEY, received_ms BIGINT NOT NULL)"
        )
        conn.commit()

    @contextmanager
    def receive(self, record: Record) -> Iterator[bool]:
        """Whether `record` is new; commits its id with the block's work, or rolls back."""
        try:
            cur = self.conn.execute(
                f"INSERT INTO {self.table} (message_id, received_ms) "
                f"VALUES ({self._mark}, {self._mark}) ON CONFLICT DO NOTHING",
                (message_id(record), time.time_ns() // 1_000_000),
            )
            yield cur.rowcount == 1
        except BaseException:
            self.conn.rollback()
            raise
        self.conn.commit()


def inbox(conn: Any, table: str = TABLE) -> Inbox:
    """The inbox of a consumer's database connection (its table is created and committed)."""
    return Inbox(conn, table)
