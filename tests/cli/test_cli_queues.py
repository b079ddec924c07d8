"""`tidings queues ...`: list, describe, peek, redrive and purge, in-process and as a script."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner, Result

import tidings
from tidings.cli.main import cli

from .test_cli import run


@pytest.fixture
def url(tmp_path: Path) -> str:
    """A store with the queue "jobs" (group "workers"): two waiting, one locked, one dead."""
    url = f"sqlite://{tmp_path}/bus.db"
    with tidings.connect(url) as bus:
        queue = bus.queue("jobs", group="workers", dead_letter_topic="jobs.dlq")
        for value in (b"dead", b"held", b"a", b"b"):
            queue.send(value)
        jobs: list[tidings.Job] = []
        deadline = time.monotonic() + 5
        while len(jobs) < 2 and time.monotonic() < deadline:
            jobs += queue.receive(max_records=2 - len(jobs), timeout_ms=100)
        jobs[0].reject("broken")
        queue.close()
        bus.create_topic("plain")
    return url


def invoke(url: str, *args: str) -> Result:
    """Run a command in-process."""
    return CliRunner().invoke(cli, ["--url", url, *args])


def ok(url: str, *args: str) -> str:
    """Run a command in-process; it must succeed; its stdout."""
    result = invoke(url, *args)
    assert result.exit_code == 0, (result.output, result.exception)
    return result.stdout


def as_json(url: str, *args: str) -> Any:
    """Run a command with --json; its parsed output."""
    return json.loads(ok(url, *args, "--json"))


def test_list_shows_each_queue_with_its_depth(url: str) -> None:
    assert as_json(url, "queues", "list") == [
        {
            "group": "workers",
            "topic": "jobs",
            "available": 2,
            "in_flight": 1,
            "delayed": 0,
            "dead_letters": 1,
        }
    ]
    lines = ok(url, "queues", "list").splitlines()
    assert lines[0].split() == [
        "GROUP",
        "TOPIC",
        "AVAILABLE",
        "IN_FLIGHT",
        "DELAYED",
        "DEAD_LETTERS",
    ]
    assert lines[1].split() == ["workers", "jobs", "2", "1", "0", "1"]


def test_describe_shows_each_partition(url: str) -> None:
    doc = as_json(url, "queues", "describe", "jobs", "--group", "workers")
    assert (doc["dead_letter_topic"], doc["dead_letters"]) == ("jobs.dlq", 1)
    assert doc["partitions"] == [{"partition": 0, "available": 2, "in_flight": 1, "delayed": 0}]
    text = ok(url, "queues", "describe", "jobs", "-g", "workers")
    assert "dead_letter_topic  jobs.dlq" in text
    assert "PARTITION  AVAILABLE  IN_FLIGHT  DELAYED" in text


def test_peek_prints_the_next_jobs_raw_or_json(url: str) -> None:
    assert ok(url, "queues", "peek", "jobs", "--group", "workers") == "a\nb\n"
    lines = ok(url, "queues", "peek", "jobs", "-g", "workers", "--max", "1", "--format", "json")
    (record,) = [json.loads(line) for line in lines.splitlines()]
    assert (record["offset"], record["value"]) == (2, "a")
    assert as_json(url, "queues", "list")[0]["available"] == 2  # peeking changed nothing


def test_redrive_copies_dead_letters_back_once(url: str) -> None:
    assert ok(url, "queues", "redrive", "jobs", "--group", "workers") == (
        "redrove 1 dead letter(s) from 'jobs.dlq' to 'jobs'\n"
    )
    assert as_json(url, "queues", "redrive", "jobs", "-g", "workers", "--max", "5")["redriven"] == 0
    assert ok(url, "queues", "peek", "jobs", "-g", "workers") == "a\nb\ndead\n"


def test_purge_needs_yes_when_not_at_a_terminal(url: str) -> None:
    refused = invoke(url, "queues", "purge", "jobs", "--group", "workers")
    assert refused.exit_code == 1
    assert "needs --yes" in refused.output
    assert as_json(url, "queues", "purge", "jobs", "-g", "workers", "--yes")["purged"] == 2
    assert as_json(url, "queues", "list")[0]["available"] == 0
    assert as_json(url, "queues", "list")[0]["in_flight"] == 1  # a locked job is kept


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["describe", "missing", "-g", "workers"], "topic 'missing' does not exist"),
        (["peek", "jobs", "-g", "nobody"], "share group 'nobody' has never read topic 'jobs'"),
        (["describe", "plain", "-g", "workers"], "share group 'workers' has never read"),
        (["redrive", "jobs", "-g", "workers", "--dead-letter-topic", "gone"], "'gone'"),
        (["peek", "jobs", "-g", "workers", "--max", "-1"], "-1"),
    ],
)
def test_bad_input_is_one_error_line(url: str, args: list[str], message: str) -> None:
    result = run(url, "queues", *args)
    err = result.stderr.decode()
    assert result.returncode in (1, 2)
    assert err.startswith("error: ") and err.count("\n") == 1, err
    assert message in err


def test_redrive_without_a_dead_letter_topic_says_how_to_name_one(url: str) -> None:
    with tidings.connect(url) as bus:
        bus.queue("plain", group="workers").purge()
    result = run(url, "queues", "redrive", "plain", "-g", "workers")
    assert result.returncode == 1
    assert "--dead-letter-topic" in result.stderr.decode()
