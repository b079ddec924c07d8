"""Deleting commands ask at a terminal, take --yes/-y, and refuse elsewhere without it."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

import tidings

from .terminal import run_at_terminal
from .test_cli import run


@pytest.fixture
def url(tmp_path: Path) -> str:
    """A store with a topic "orders" (2 records), a group "billing" and a queue "jobs".

    The queue has one job locked to a consumer and one waiting.
    """
    url = f"sqlite://{tmp_path}/bus.db"
    with tidings.connect(url) as bus:
        bus.create_topic("orders")
        bus.publish("orders", b"a")
        bus.publish("orders", b"b")
        bus.reset_offsets("billing", "orders", to="latest")
        queue = bus.queue("jobs", group="workers")
        for job in (b"locked", b"waiting"):
            queue.send(job)
        received: list[tidings.Job] = []
        deadline = time.monotonic() + 5
        while not received and time.monotonic() < deadline:
            received = queue.receive(max_records=1, timeout_ms=100)
        queue.close()
    return url


COMMANDS = {
    "topics delete": ["topics", "delete", "orders"],
    "groups delete": ["groups", "delete", "billing"],
    "queues purge": ["queues", "purge", "jobs", "--group", "workers"],
}


def state(url: str) -> tuple[list[str], list[str], int]:
    """The topics, the consumer groups, and the jobs waiting in "jobs"."""
    with tidings.connect(url) as bus:
        topics = [t.name for t in bus.list_topics()]
        groups = bus.list_groups()
        depth = sum(d.available for d in bus.queue("jobs", group="workers").depth())
    return topics, groups, depth


@pytest.mark.parametrize("command", COMMANDS, ids=str)
def test_without_yes_and_not_at_a_terminal_nothing_is_deleted(url: str, command: str) -> None:
    before = state(url)
    proc = run(url, *COMMANDS[command], stdin=b"y\n")  # a pipe is not a person
    assert proc.returncode == 1
    err = proc.stderr.decode()
    assert err.startswith("error: ") and "needs --yes (or -y) when not run at a terminal" in err
    assert "nothing was changed" in err and err.count("\n") == 1
    assert proc.stdout == b""
    assert state(url) == before


@pytest.mark.parametrize("command", COMMANDS, ids=str)
def test_at_a_terminal_it_asks_and_no_keeps_everything(url: str, command: str) -> None:
    before = state(url)
    status, out = run_at_terminal(url, *COMMANDS[command], typed=b"n\n")
    assert status == 1, out
    assert "? [y/N]: " in out and "cancelled; nothing was changed" in out
    assert state(url) == before


@pytest.mark.parametrize("flag", ["--yes", "-y"])
def test_yes_or_an_answer_at_a_terminal_deletes(url: str, flag: str) -> None:
    status, out = run_at_terminal(url, *COMMANDS["topics delete"], typed=b"y\n")
    assert status == 0, out
    assert "Delete topic 'orders' and its 2 record(s)? [y/N]: " in out
    assert "deleted topic 'orders'" in out
    for command in ("groups delete", "queues purge"):
        proc = run(url, *COMMANDS[command], flag)
        assert proc.returncode == 0, proc.stderr
        assert proc.stderr == b""
    assert state(url) == (["jobs"], [], 0)
