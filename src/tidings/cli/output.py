"""How the CLI prints: aligned tables for people, JSON (see tidings.api.jsonform) for scripts."""

from __future__ import annotations

import json
from collections.abc import Sequence

import click


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
