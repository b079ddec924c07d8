"""The `tidings` command line, run in-process with CliRunner and as the real executable."""

from __future__ import annotations

import base64
import inspect
import json
import selectors
import shutil
import signal
import subprocess
import sys
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

import tidings
from tidings.cli import tour
from tidings.cli.main import cli


def executable() -> list[str]:
    """The installed `tidings` script next to this Python, else the one on PATH, else -m."""
    found = shutil.which("tidings", path=str(Path(sys.executable).parent)) or shutil.which(
        "tidings"
    )
    return [found] if found else [sys.executable, "-m", "tidings.cli.main"]


TIDINGS = executable()


@pytest.fixture
def url(tmp_path: Path) -> str:
    """A fresh store for each test."""
    return f"sqlite://{tmp_path}/bus.db"


def ok(url: str, *args: str, stdin: str | bytes | None = None) -> str:
    """Run a command in-process; it must succeed; its stdout."""
    result = CliRunner().invoke(cli, ["--url", url, *args], input=stdin)
    assert result.exit_code == 0, (result.output, result.exception)
    return result.stdout


def as_json(url: str, *args: str) -> Any:
    """Run a command with --json; its parsed output."""
    return json.loads(ok(url, *args, "--json"))


def run(
    url: str, *args: str, stdin: bytes | None = None, timeout: float = 20
) -> subprocess.CompletedProcess[bytes]:
    """Run the real executable to completion."""
    return subprocess.run(
        [*TIDINGS, "--url", url, *args],
        input=stdin,
        capture_output=True,
        timeout=timeout,
        check=False,
    )


def consumed(url: str, *args: str) -> list[dict[str, Any]]:
    """Records printed by `consume --format json`."""
    out = ok(url, "consume", *args, "--format", "json")
    return [json.loads(line) for line in out.splitlines()]


def read_line(proc: subprocess.Popen[bytes], timeout: float) -> bytes:
    """One line of the process's stdout, waiting at most `timeout` seconds for it."""
    assert proc.stdout is not None
    with selectors.DefaultSelector() as selector:
        selector.register(proc.stdout, selectors.EVENT_READ)
        if not selector.select(timeout):
            pytest.fail(f"no output within {timeout} s")
    return proc.stdout.readline()


def test_topics_lifecycle(url: str) -> None:
    out = ok(url, "topics", "create", "orders", "--partitions", "3", "--retention-ms", "60000")
    assert "created topic 'orders' with 3 partition(s)" in out
    ok(
        url,
        "topics",
        "create",
        "audit",
        "--cleanup-policy",
        "compact",
        "--config",
        "retention.ms=-1",
    )
    assert "already exists" in ok(url, "topics", "create", "orders", "--if-not-exists")

    table = ok(url, "topics", "list").splitlines()
    assert table[0].split() == [
        "NAME",
        "PARTITIONS",
        "CLEANUP.POLICY",
        "RETENTION.MS",
        "RETENTION.BYTES",
    ]
    assert table[1].split() == ["audit", "1", "compact", "-1", "-1"]
    assert table[2].split() == ["orders", "3", "delete", "60000", "-1"]
    listed = as_json(url, "topics", "list")
    assert [(t["name"], t["partitions"]) for t in listed] == [("audit", 1), ("orders", 3)]
    assert listed[0]["config"]["retention.ms"] == -1

    ok(url, "produce", "orders", "-p", "2", "a", "b")
    described = as_json(url, "topics", "describe", "orders")
    assert described["records"] == 2
    assert [
        (p["partition"], p["start_offset"], p["end_offset"]) for p in described["partition_states"]
    ] == [(0, 0, 0), (1, 0, 0), (2, 0, 2)]
    human = ok(url, "topics", "describe", "orders")
    assert "retention.ms           60000" in human
    assert "PARTITION  START_OFFSET  END_OFFSET  RECORDS  SIZE_BYTES" in human

    out = ok(url, "topics", "alter", "orders", "--partitions", "5", "--config", "retention.ms=1000")
    assert out.splitlines() == ["partitions: 3 -> 5", "retention.ms: 60000 -> 1000"]
    described = as_json(url, "topics", "describe", "orders")
    assert (described["partitions"], described["config"]["retention.ms"]) == (5, 1000)

    assert ok(url, "topics", "delete", "orders", "--yes") == "deleted topic 'orders'\n"
    assert [t["name"] for t in as_json(url, "topics", "list")] == ["audit"]


def test_produce_from_a_pipe_with_keys_and_headers(url: str) -> None:
    ok(url, "topics", "create", "orders")
    proc = run(
        url,
        "produce",
        "orders",
        "--key-separator",
        ":",
        "--header",
        "source=cli",
        "-H",
        "trace=1",
        "--json",
        stdin=b"alice:one\nbob:two\nno key here\n",
    )
    assert proc.returncode == 0, proc.stderr
    placed = [json.loads(line) for line in proc.stdout.splitlines()]
    assert [(p["topic"], p["partition"], p["offset"]) for p in placed] == [
        ("orders", 0, 0),
        ("orders", 0, 1),
        ("orders", 0, 2),
    ]

    records = consumed(url, "orders", "--from-beginning")
    headers = [["source", "cli"], ["trace", "1"]]
    assert [(r["offset"], r["key"], r["value"], r["headers"]) for r in records] == [
        (0, "alice", "one", headers),
        (1, "bob", "two", headers),
        (2, None, "no key here", headers),
    ]
    assert records[0]["timestamp"] == placed[0]["timestamp"]


def test_produce_arguments_then_consume_raw_and_max(url: str) -> None:
    ok(url, "topics", "create", "words")
    out = ok(url, "produce", "words", "--key", "k", "x", "y", "z")
    assert out.splitlines() == ["words[0]@0", "words[0]@1", "words[0]@2"]
    assert ok(url, "produce", "words", "--quiet", "w") == ""

    assert ok(url, "consume", "words", "--from-beginning", "--format", "raw") == "x\ny\nz\nw\n"
    assert ok(url, "consume", "words", "--from-beginning", "--max", "2") == "x\ny\n"
    assert ok(url, "consume", "words") == ""  # no --from-beginning: only new records


def test_consume_json_marks_bytes_that_are_not_utf8(url: str) -> None:
    ok(url, "topics", "create", "bin")
    ok(url, "produce", "bin", "-q", stdin=b"\xff\x00\xfe\n")
    (record,) = consumed(url, "bin", "--from-beginning")
    assert record["value"] == {"base64": base64.b64encode(b"\xff\x00\xfe").decode()}


def test_group_commits_then_reset_rereads(url: str) -> None:
    ok(url, "topics", "create", "orders", "--partitions", "2")
    ok(url, "produce", "orders", "-q", "-K", "=", stdin="a=1\nb=2\nc=3\nd=4\n")

    first = consumed(url, "orders", "--group", "billing", "--from-beginning")
    assert sorted(r["value"] for r in first) == ["1", "2", "3", "4"]
    group = as_json(url, "groups", "describe", "billing")
    assert group["state"] == "Empty"
    assert group["lag"] == 0
    assert all(p["committed"] == p["end_offset"] and p["lag"] == 0 for p in group["partitions"])
    assert sum(p["committed"] for p in group["partitions"]) == 4
    assert consumed(url, "orders", "--group", "billing") == []
    assert as_json(url, "groups", "list") == [
        {"group": "billing", "state": "Empty", "members": 0, "lag": 0}
    ]

    reset = as_json(url, "groups", "reset-offsets", "billing", "--topic", "orders", "--to-earliest")
    assert reset == [
        {"topic": "orders", "partition": 0, "offset": 0},
        {"topic": "orders", "partition": 1, "offset": 0},
    ]
    assert as_json(url, "groups", "describe", "billing")["lag"] == 4
    again = consumed(url, "orders", "--group", "billing")
    assert [(r["partition"], r["offset"]) for r in again] == [
        (r["partition"], r["offset"]) for r in first
    ]

    out = ok(
        url, "groups", "reset-offsets", "billing", "-t", "orders", "--to-offset", "1", "-p", "0"
    )
    assert out.splitlines()[1].split() == ["orders", "0", "1"]
    out = ok(
        url,
        "groups",
        "reset-offsets",
        "billing",
        "-t",
        "orders",
        "--to-datetime",
        "2000-01-01T00:00:00Z",
    )
    assert [line.split()[2] for line in out.splitlines()[1:]] == ["0", "0"]

    assert ok(url, "groups", "delete", "billing", "-y") == "deleted group 'billing'\n"
    assert as_json(url, "groups", "list") == []


def test_follow_receives_new_records_and_exits_cleanly_on_sigterm(url: str) -> None:
    ok(url, "topics", "create", "live")
    args = ["consume", "live", "--group", "watch", "--from-beginning", "--follow"]
    proc = subprocess.Popen(
        [*TIDINGS, "--url", url, *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE
    )
    try:
        ok(url, "produce", "live", "hello")
        assert read_line(proc, timeout=15) == b"hello\n"
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=15) == 0
        assert proc.stderr is not None
        assert proc.stderr.read() == b""
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        for stream in (proc.stdout, proc.stderr):
            if stream is not None:
                stream.close()
    (partition,) = as_json(url, "groups", "describe", "watch")["partitions"]
    assert (partition["committed"], partition["lag"]) == (1, 0)


def test_tour_runs_twice_on_the_same_store(url: str) -> None:
    for _ in range(2):
        proc = run(url, "tour")
        assert proc.returncode == 0, proc.stderr
        out = proc.stdout.decode()
        assert "lag of group 'tour.billing' before the commit: 6" in out
        assert "lag of group 'tour.billing' after the commit: 0" in out
    assert as_json(url, "topics", "describe", "tour.orders")["records"] == 12


def test_tour_shows_the_code_of_each_step_then_what_it_printed() -> None:
    proc = run("memory://", "tour")
    assert proc.returncode == 0, proc.stderr
    out = proc.stdout.decode()
    shown = [line.partition("│ ")[2].strip() for line in out.splitlines() if "│ " in line]
    for line in [
        'spec = bus.create_topic("tour.orders", 3, exist_ok=True)',
        'bus.reset_offsets("tour.billing", "tour.orders", to="latest")',
        'meta = bus.publish("tour.orders", value, key=customer.encode())',
        'consumer = bus.consumer("tour.orders", group="tour.billing", auto_commit=False)',
        "consumer.commit()",
    ]:
        assert line in shown, line
    # what is shown is the steps' own code, each to its last line
    steps: list[Callable[..., object]] = [
        tour.create_topic,
        tour.start_at_the_end,
        tour.produce,
        tour.consume,
        tour.commit,
    ]
    sources = [inspect.getsource(step).splitlines() for step in steps]
    assert set(shown) <= {line.strip() for source in sources for line in source}
    assert all(source[-1].strip() in shown for source in sources)
    assert out.index("│ consumer.commit()") < out.index("after the commit: 0")
    assert out.index("tour.orders: 3 partitions") > out.index("│ spec = bus.create_topic(")


BAD_INPUT = [
    (["topics", "create", "bad name!"], "invalid topic name 'bad name!'"),
    (["produce", "nope", "x"], "topic 'nope' does not exist"),
    (["consume", "nope"], "topic 'nope' does not exist"),
    (["topics", "create", "t", "--config", "colour=red"], "unknown topic setting 'colour'"),
    (["topics", "alter", "kept", "--config", "retention.ms=soon"], "retention.ms takes an"),
    (["topics", "alter", "kept", "--partitions", "1"], "the new count must be larger"),
    (["groups", "describe", "nope"], "consumer group 'nope' does not exist"),
    (["topics", "create", "huge", "--partitions", str(10**20)], "an int from 1 to 2147483647"),
    (["topics", "create", "huge", "--partitions", str(2**31 - 1)], "max_partitions=10000"),
    (["topics", "alter", "kept", "--partitions", "10001"], "max_partitions=10000"),
]


def test_bad_input_is_one_error_line_and_changes_nothing(url: str) -> None:
    ok(url, "topics", "create", "kept")
    before = as_json(url, "topics", "describe", "kept")
    # the cases are independent, so they run side by side to keep the test quick
    procs = [
        subprocess.Popen(
            [*TIDINGS, "--url", url, *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE
        )
        for args, _ in BAD_INPUT
    ]
    try:
        outcomes = [proc.communicate(timeout=20) for proc in procs]
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    for (args, message), proc, (out, err) in zip(BAD_INPUT, procs, outcomes, strict=True):
        text = err.decode()
        assert proc.returncode == 1, args
        assert out == b"", args
        assert text.startswith("error: ") and message in text, (args, text)
        assert text.count("\n") == 1 and "Traceback" not in text, (args, text)
    assert [t["name"] for t in as_json(url, "topics", "list")] == ["kept"]
    assert as_json(url, "topics", "describe", "kept") == before


def test_a_file_that_is_not_a_store_is_refused_and_left_untouched(tmp_path: Path) -> None:
    path = tmp_path / "notes.txt"
    path.write_bytes(b"shopping list\n")
    proc = run(f"sqlite://{path}", "topics", "list")
    assert proc.returncode == 1
    err = proc.stderr.decode()
    assert err.startswith("error: ") and "is not a tidings store" in err
    assert "Traceback" not in err
    assert path.read_bytes() == b"shopping list\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["notes.txt"]


def test_usage_errors_exit_2_with_one_line(url: str) -> None:
    proc = run(url, "groups", "reset-offsets", "g", "--topic", "t")
    assert proc.returncode == 2
    assert proc.stderr.decode().startswith("error: give exactly one of --to-earliest")
    assert proc.stderr.count(b"\n") == 1


def test_every_command_has_help() -> None:
    commands = [
        [],
        ["topics"],
        *(["topics", c] for c in ("create", "list", "describe", "alter", "delete")),
        ["produce"],
        ["consume"],
        ["groups"],
        *(["groups", c] for c in ("list", "describe", "reset-offsets", "delete")),
        ["tour"],
    ]
    for command in commands:
        result = CliRunner().invoke(cli, [*command, "--help"])
        assert result.exit_code == 0, command
        assert result.stdout.startswith("Usage: ")


def test_group_consume_waits_for_its_share_of_the_partitions(url: str) -> None:
    ok(url, "topics", "create", "orders", "--partitions", "2")
    for p in range(2):
        for i in range(3):
            ok(url, "produce", "orders", f"p{p}-{i}", "--partition", str(p))
    with tidings.connect(url) as bus:
        # a member that owns both partitions until the command's consumer joins; it gives
        # one up inside a poll, as in Kafka, so it keeps polling
        member = bus.consumer(
            "orders", group="billing", auto_commit=False, heartbeat_interval_ms=100
        )
        member.poll(timeout_ms=500)
        assert len(member.assignment()) == 2
        stop = threading.Event()
        polling = threading.Thread(target=lambda: poll_until(member, stop))
        polling.start()
        try:
            records = consumed(url, "orders", "--group", "billing", "--from-beginning")
        finally:
            stop.set()
            polling.join()
            member.close()
    assert len(records) == 3
    assert len({r["partition"] for r in records}) == 1


def poll_until(consumer: tidings.Consumer, stop: threading.Event) -> None:
    """Poll `consumer` (handing records to nobody) until `stop` is set."""
    while not stop.is_set():
        consumer.poll(timeout_ms=50)
