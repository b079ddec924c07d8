"""Colour only at a terminal, and never when NO_COLOR is set (https://no-color.org)."""

from __future__ import annotations

from pathlib import Path

import pytest

import tidings

from .terminal import run_at_terminal
from .test_cli import run

ESCAPE = "\x1b["
BOLD_HEADER = "\x1b[1mNAME"
RED_ERROR = "\x1b[31m\x1b[1merror:\x1b[0m topic 'missing' does not exist"


@pytest.fixture
def url(tmp_path: Path) -> str:
    """A store with one topic."""
    url = f"sqlite://{tmp_path}/bus.db"
    with tidings.connect(url) as bus:
        bus.create_topic("orders")
    return url


def test_a_terminal_gets_bold_headers_and_a_red_error_prefix(url: str) -> None:
    status, out = run_at_terminal(url, "topics", "list")
    assert status == 0 and BOLD_HEADER in out, out
    status, out = run_at_terminal(url, "topics", "describe", "missing")
    assert status == 1 and RED_ERROR in out, out
    status, out = run_at_terminal(url, "topics", "list", env={"NO_COLOR": ""})
    assert BOLD_HEADER in out, out  # an empty NO_COLOR does not count


@pytest.mark.parametrize("value", ["1", "0", "false"])
def test_no_color_turns_colour_off_at_a_terminal(url: str, value: str) -> None:
    for args in (["topics", "list"], ["topics", "describe", "missing"]):
        _, out = run_at_terminal(url, *args, env={"NO_COLOR": value})
        assert ESCAPE not in out, out
        assert out.startswith(("NAME", "error: topic 'missing' does not exist")), out


def test_pipes_and_files_get_no_colour(url: str) -> None:
    listed = run(url, "topics", "list")
    assert listed.stdout.startswith(b"NAME ") and ESCAPE.encode() not in listed.stdout
    failed = run(url, "topics", "describe", "missing")
    assert failed.stderr.startswith(b"error: ") and ESCAPE.encode() not in failed.stderr
