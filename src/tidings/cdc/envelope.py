"""The change event: one record per changed row, in the envelope Debezium users know.

Key: the row's primary key as a JSON object, e.g. {"id": 7} (none for a truncate).
Value (JSON, version 1 of tidings' change-event schema)::

    {"before": {...} | null,     # the row before the change (null for c and r)
     "after":  {...} | null,     # the row after the change (null for d)
     "source": {"version": "tidings x.y.z", "connector": "sqlite" | "postgresql",
                "name": PREFIX, "ts_ms": when the database made the change,
                "snapshot": "true" | "last" | "false", "db": ..., "schema": ...,
                "table": ..., "txId": ... | null, "lsn": ... | null, "sequence": ...},
     "op": "c" | "u" | "d" | "r" | "t",
     "ts_ms": when the change was captured,
     "transaction": null}

A delete is followed by a tombstone (the same key, a null value) so a compacted topic
forgets the key. Bytes are base64 text, as Debezium's JSON converter writes them. Every
record carries an `id` header that stays the same when a relay publishes it again, so
`tidings.cdc.inbox` can drop such duplicates.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from importlib.metadata import PackageNotFoundError, version
from typing import Any

SCHEMA_VERSION = 1
"""Bumped when a field changes meaning; new fields may come without a bump."""
OPS = ("c", "u", "d", "r", "t")

try:
    _VERSION = f"tidings {version('tidings')}"
except PackageNotFoundError:  # running from a source tree
    _VERSION = "tidings"


@dataclass(frozen=True)
class Source:
    """Where a change came from."""

    connector: str
    name: str
    db: str
    schema: str
    table: str
    ts_ms: int
    sequence: int | str | None = None
    tx_id: int | None = None
    lsn: int | None = None
    snapshot: str = "false"
    """"true" for a snapshot read, "last" for the snapshot's last row, else "false"."""

    def to_json(self) -> dict[str, Any]:
        """The `source` block, with Debezium's field names."""
        return {
            "version": _VERSION,
            "connector": self.connector,
            "name": self.name,
            "ts_ms": self.ts_ms,
            "snapshot": self.snapshot,
            "db": self.db,
            "schema": self.schema,
            "table": self.table,
            "txId": self.tx_id,
            "lsn": self.lsn,
            "sequence": self.sequence,
        }


@dataclass(frozen=True)
class Change:
    """One changed row, ready to become a record (and a tombstone after a delete)."""

    op: str
    key: dict[str, Any] | None
    """The row's primary key; None for a truncate, which is of the whole table."""
    before: dict[str, Any] | None
    after: dict[str, Any] | None
    source: Source

    def __post_init__(self) -> None:
        if self.op not in OPS:
            raise ValueError(f"op must be one of {', '.join(OPS)}, not {self.op!r}")

    @property
    def id(self) -> str:
        """A stable id for the event (the `id` header), the same when it is published again."""
        s = self.source
        if s.sequence is None:  # a snapshot read: the row's key names it
            return f"{s.name}/{s.schema}.{s.table}/snapshot/{_json(self.key).decode()}"
        return f"{s.name}/{s.schema}.{s.table}/{s.sequence}/{self.op}"

    def records(self) -> list[tuple[bytes | None, bytes | None, dict[str, bytes]]]:
        """(key, value, headers) of the event, then of the tombstone if it is a delete."""
        key = None if self.key is None else _json(self.key)
        value = _json(
            {
                "before": self.before,
                "after": self.after,
                "source": self.source.to_json(),
                "op": self.op,
                "ts_ms": time.time_ns() // 1_000_000,
                "transaction": None,
            }
        )
        event = (key, value, {"id": self.id.encode()})
        if self.op == "d":
            return [event, (key, None, {"id": f"{self.id}/tombstone".encode()})]
        return [event]


def _json(doc: object) -> bytes:
    return json.dumps(doc, separators=(",", ":"), ensure_ascii=False).encode()
