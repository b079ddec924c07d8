"""How the CLI prints: aligned tables for people, JSON (see tidings.api.jsonform) for scripts.

Colour goes through `styled` only, so one place decides: on at a terminal, off in pipes
and files, and off whenever NO_COLOR is set to anything (https://no-color.org).
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Sequence
from typing import Any, TextIO

import click


def colour_on(stream: TextIO) -> bool:
    """Whether to colour what goes to `stream`: a terminal, and NO_COLOR unset or empty."""
    return not os.environ.get("NO_COLOR") and stream.isatty()


def styled(text: str, *, err: bool = False, **style: Any) -> str:
    """`text` in click's style (bold=True, fg="red", ...) if stdout (stderr) takes colour."""
    return click.style(text, **style) if colour_on(sys.stderr if err else sys.stdout) else text


def echo_error(message: str) -> None:
    """Print `error: message` as one line on stderr, the prefix in red at a terminal."""
    prefix = styled("error:", err=True, fg="red", bold=True)
    click.echo(f"{prefix} {' '.join(message.splitlines())}", err=True)


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
    """Print a table, its header in bold at a terminal."""
    header, _, body = table(headers, rows).partition("\n")
    click.echo(styled(header, bold=True))
    if body:
        click.echo(body)


def echo_fields(fields: Sequence[tuple[str, object]]) -> None:
    """Print `name value` pairs with the values aligned."""
    width = max(len(name) for name, _ in fields)
    for name, value in fields:
        click.echo(f"{name.ljust(width)}  {cell(value)}")
