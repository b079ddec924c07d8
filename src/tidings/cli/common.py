"""Pieces every command shares: the bus URL, connecting, --json, and --yes to confirm."""

from __future__ import annotations

import sys
from collections.abc import Callable
from dataclasses import dataclass
from typing import TypeVar

import click

import tidings
from tidings.core.errors import StoreNotFoundError

F = TypeVar("F", bound=Callable[..., object])


@dataclass(frozen=True)
class Options:
    """Global options, given before the command."""

    url: str


def open_bus(*, create: bool = False) -> tidings.Bus:
    """Connect to the bus named by the global --url; use it in a `with` block.

    Only commands that make something (create=True) make a missing sqlite:// store; the
    others say there is none, rather than leave an empty store behind.
    """
    options = click.get_current_context().find_object(Options)
    assert options is not None, "commands run under the tidings group"
    url = options.url
    if not create and url.startswith("sqlite://"):
        url += f"{'&' if '?' in url else '?'}create=false"
    try:
        return tidings.connect(url)
    except StoreNotFoundError as e:
        raise click.ClickException(
            f"no tidings store at {e.path}; create one with 'tidings topics create NAME' "
            f"or pass --url"
        ) from e


def json_option(fn: F) -> F:
    """Add --json: print one JSON document instead of text."""
    return click.option(
        "--json",
        "as_json",
        is_flag=True,
        help="Print one JSON document, for scripts, instead of text.",
    )(fn)


def format_option(fn: F) -> F:
    """Add --format raw|json for commands that print records."""
    return click.option(
        "--format",
        "fmt",
        type=click.Choice(["raw", "json"]),
        default="raw",
        show_default=True,
        help="raw: each value as-is on its own line; json: one object per record.",
    )(fn)


def yes_option(fn: F) -> F:
    """Add --yes/-y: do what a deleting command does without asking."""
    return click.option("--yes", "-y", is_flag=True, help="Do not ask for confirmation.")(fn)


def confirm(question: str, action: str, yes: bool) -> None:
    """Go on if --yes was given or the user agrees at a terminal; otherwise stop, unchanged.

    Not at a terminal (a script, a pipe) there is nobody to ask, so without --yes the
    command refuses rather than deleting unasked.
    """
    if yes:
        return
    if not sys.stdin.isatty():
        raise click.ClickException(
            f"{action} needs --yes (or -y) when not run at a terminal; nothing was changed"
        )
    if not click.confirm(question, err=True):
        raise click.ClickException(f"{action} cancelled; nothing was changed")
