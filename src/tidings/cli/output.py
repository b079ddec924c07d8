"""How the CLI prints: aligned tables for people, JSON for scripts.

Bytes in JSON (keys, values, header values) follow one scheme everywhere: `null` for
None, a string when the bytes are valid UTF-8, otherwise `{"base64": "..."}`.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Sequence
from typing import Any

import click

from tidings.core.records import Record, RecordMetadata


def bytes_to_json(data: bytes | None) -> str | dict[str, str] | None:
    """Bytes as JSON: UTF-8 text when they decode, else {"base64": ...}."""
    if data is None:
        return None
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        return {"base64": base64.b64encode(data).decode("ascii")}


def record_to_json(record: Record) -> dict[str, Any]:
    """A consumed record as a JSON object."""
    return {
        "topic": record.topic,
        "partition": record.partition,
        "offset": record.offset,
        "timestamp": record.timestamp,
        "key": bytes_to_json(record.key),
        "value": bytes_to_json(record.value),
        "headers": [[name, bytes_to_json(value)] for name, value in record.headers],
    }


def metadata_to_json(meta: RecordMetadata) -> dict[str, Any]:
    """Where a produced record went, as a JSON object."""
    return {
        "topic": meta.topic,
        "partition": meta.partition,
        "offset": meta.offset,
        "timestamp": meta.timestamp,
    }


def json_line(doc: object) -> str:
    """One compact JSON document on one line."""
    return json.dumps(doc, ensure_ascii=False, separators=(",", ":"))


def echo_json(doc: object) -> None:
    """Print one indented JSON document."""
    click.echo(json.dumps(doc, ensure_ascii=False, indent=2))


def cell(value: object) -> str:
    """A value as table text; a missing value shows as '-'."""
    return "-" if value is None else str(value)


def table(headers: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
    """Aligned plain-text columns; numbers are right-aligned."""
    texts = [[cell(v) for v in row] for row in rows]
    widths = [len(h) for h in headers]
    for row in texts:
        widths = [max(w, len(t)) for w, t in zip(widths, row, strict=True)]
    numeric = [
        bool(rows) and all(isinstance(row[i], int) or row[i] is None for row in rows)
        for i in range(len(headers))
    ]

    def line(values: Sequence[str]) -> str:
        parts = [
            v.rjust(w) if num else v.ljust(w)
            for v, w, num in zip(values, widths, numeric, strict=True)
        ]
        return "  ".join(parts).rstrip()

    return "\n".join([line(headers), *(line(row) for row in texts)])


def echo_table(headers: Sequence[str], rows: Sequence[Sequence[object]]) -> None:
    """Print a table."""
    click.echo(table(headers, rows))


def echo_fields(fields: Sequence[tuple[str, object]]) -> None:
    """Print `name value` pairs with the values aligned."""
    width = max(len(name) for name, _ in fields)
    for name, value in fields:
        click.echo(f"{name.ljust(width)}  {cell(value)}")
