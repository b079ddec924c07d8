"""The `tidings` command on a base install: no extra loaded until needed, a missing one
named, nothing written where it runs except the store a command was asked to make."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import click
import pytest

from tests.cli.test_cli import read_line
from tidings.cli.main import COMMANDS, cli, run

EXTRAS = {
    "kafka": ["confluent_kafka"],
    "nats": ["nats"],
    "postgres": ["psycopg"],
    "server": ["kio", "scramp", "fastapi", "uvicorn", "prometheus_client"],
}
"""The modules each extra brings, as tidings imports them."""
SERVE_ARGS = ["--kafka", "127.0.0.1:0", "--http", "off"]
"""A server on free ports, Kafka only."""
EVERY_EXTRA = sorted({m for modules in EXTRAS.values() for m in modules} | {"hypothesis"})

# Loaded first by every Python started with this directory on PYTHONPATH: it makes the
# modules in $BLOCK unimportable, and at exit writes the top-level modules loaded to $LOADED.
SITECUSTOMIZE = """
import atexit, json, os, sys

BLOCKED = set(filter(None, os.environ.get("BLOCK", "").split(",")))


class Blocker:
    def find_spec(self, name, path=None, target=None):
        if name.partition(".")[0] in BLOCKED:
            raise ModuleNotFoundError(f"No module named {name!r}", name=name)
        return None


sys.meta_path.insert(0, Blocker())


@atexit.register
def report():
    if os.environ.get("LOADED"):
        with open(os.environ["LOADED"], "w") as f:
            json.dump(sorted({m.partition(".")[0] for m in sys.modules}), f)
"""


@pytest.fixture
def cwd(tmp_path: Path) -> Path:
    """An empty directory to run commands in, apart from the sitecustomize beside it."""
    (tmp_path / "site").mkdir()
    (tmp_path / "site" / "sitecustomize.py").write_text(SITECUSTOMIZE)
    (tmp_path / "work").mkdir()
    return tmp_path / "work"


def env_for(cwd: Path, block: list[str]) -> dict[str, str]:
    """The environment of a command that cannot import `block`; no $TIDINGS_URL leaks in."""
    env = {k: v for k, v in os.environ.items() if k != "TIDINGS_URL"}
    env["PYTHONPATH"] = str(cwd.parent / "site")
    env["BLOCK"] = ",".join(block)
    env["LOADED"] = str(cwd.parent / "loaded.json")
    return env


def tidings(
    cwd: Path, *args: str, block: list[str] = EVERY_EXTRA, stdin: str | None = None
) -> subprocess.CompletedProcess[str]:
    """Run `python -m tidings ARGS` in `cwd`, with the modules in `block` unimportable."""
    return subprocess.run(
        [sys.executable, "-m", "tidings", *args],
        cwd=cwd,
        env=env_for(cwd, block),
        input=stdin,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def loaded(cwd: Path) -> list[str]:
    """The top-level modules the last command had loaded when it exited."""
    modules: list[str] = json.loads((cwd.parent / "loaded.json").read_text())
    return modules


def test_help_lists_every_command_with_its_own_short_help() -> None:
    ctx = click.Context(cli)
    for name, (_, short_help) in COMMANDS.items():
        command = cli.get_command(ctx, name)
        assert command is not None, name
        assert command.get_short_help_str(limit=1000) == short_help, name


def test_base_commands_run_without_any_extra(cwd: Path) -> None:
    steps: list[tuple[list[str], str | None]] = [
        (["--version"], None),
        (["--help"], None),
        (["topics", "create", "orders", "--partitions", "2"], None),
        (["topics", "list"], None),
        (["topics", "describe", "orders"], None),
        (["produce", "orders", "--key", "k"], "one\ntwo\n"),
        (["consume", "orders", "--group", "billing", "--from-beginning"], None),
        (["groups", "list"], None),
        (["groups", "describe", "billing"], None),
        (["queues", "list"], None),
        (["tour"], None),
    ]
    for args, stdin in steps:
        result = tidings(cwd, *args, stdin=stdin)
        assert result.returncode == 0, (args, result.stderr)
        assert "kio" not in loaded(cwd) and "hypothesis" not in loaded(cwd), args
    assert tidings(cwd, "consume", "orders", "--from-beginning").stdout == "one\ntwo\n"
    assert "Commands:" in tidings(cwd, "--help").stdout
    assert sorted(os.listdir(cwd)) == [".tidings"]


def test_commands_with_every_module_importable_load_no_server(cwd: Path) -> None:
    # hypothesis is installed here: nothing on these paths may load it (it writes .hypothesis/)
    tidings(cwd, "topics", "create", "orders")
    for args in (["--help"], ["topics", "list"], ["consume", "orders"], ["groups", "list"]):
        assert tidings(cwd, *args, block=[]).returncode == 0, args
        assert {"kio", "hypothesis", "fastapi"}.isdisjoint(loaded(cwd)), args
    assert sorted(os.listdir(cwd)) == [".tidings"]


def test_serve_leaves_no_hypothesis_directory(cwd: Path) -> None:
    proc = subprocess.Popen(
        [sys.executable, "-m", "tidings", "--url", "sqlite://./bus.db", "serve", *SERVE_ARGS],
        cwd=cwd,
        env=env_for(cwd, []),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    try:
        assert read_line(proc, timeout=60) == b"tidings serve\n"
    finally:
        proc.send_signal(signal.SIGTERM)
        _, stderr = proc.communicate(timeout=30)
    assert proc.returncode == 0, stderr
    assert "kio" in loaded(cwd) and "hypothesis" not in loaded(cwd)
    assert ".hypothesis" not in os.listdir(cwd)


def extra_message(what: str, extra: str) -> str:
    """The one line a command prints when an extra is missing."""
    return f'error: {what} needs the {extra} extra: pip install "tidings[{extra}]"\n'


@pytest.mark.parametrize(
    ("args", "extra", "what"),
    [
        (["serve", *SERVE_ARGS], "server", "tidings serve"),
        (["--url", "kafka://127.0.0.1:9", "topics", "list"], "kafka", "kafka://"),
        (["--url", "nats://127.0.0.1:9", "topics", "list"], "nats", "nats://"),
        (["cdc", "run", "../pg.toml"], "postgres", "PostgreSQL CDC"),
    ],
    ids=["server", "kafka", "nats", "postgres"],
)
def test_a_missing_extra_is_named_in_one_line(
    cwd: Path, args: list[str], extra: str, what: str
) -> None:
    (cwd.parent / "pg.toml").write_text(
        '[postgres]\ndsn = "host=127.0.0.1"\ntables = ["public.orders"]\n'
    )
    result = tidings(cwd, *args, block=EXTRAS[extra])
    assert (result.returncode, result.stderr) == (1, extra_message(what, extra))
    assert os.listdir(cwd) == []


def test_the_api_names_a_missing_extra(cwd: Path) -> None:
    script = (
        "import tidings\n"
        "try:\n"
        "    tidings.connect('kafka://127.0.0.1:9')\n"
        "except tidings.ConfigurationError as e:\n"
        "    print(e)\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", script],
        cwd=cwd,
        env=env_for(cwd, EXTRAS["kafka"]),
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    assert result.stdout == 'kafka:// needs the kafka extra: pip install "tidings[kafka]"\n'


def test_python_m_tidings_is_the_command(cwd: Path) -> None:
    assert tidings(cwd, "--version").stdout == "tidings, version 0.1.0\n"
    result = tidings(cwd, "topics", "describe", "missing")
    assert result.returncode == 1 and result.stderr.startswith("error: ")


def test_url_help_names_every_engine(cwd: Path) -> None:
    words = tidings(cwd, "--help").stdout.split()
    for engine in ("sqlite://PATH", "memory://,", "kafka://HOST:PORT,...", "nats://HOST:PORT"):
        assert engine in words


@pytest.mark.parametrize(
    "args",
    [
        ["topics", "list"],
        ["topics", "describe", "orders"],
        ["topics", "alter", "orders", "--partitions", "2"],
        ["topics", "delete", "orders"],
        ["groups", "list"],
        ["groups", "describe", "billing"],
        ["groups", "delete", "billing"],
        ["queues", "list"],
        ["queues", "describe", "tasks", "--group", "workers"],
        ["queues", "peek", "tasks", "--group", "workers"],
        ["consume", "orders"],
    ],
    ids=" ".join,
)
def test_a_command_on_no_store_says_so_and_creates_none(
    args: list[str],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("TIDINGS_URL", raising=False)
    assert run(args) == 1
    assert capsys.readouterr().err == (
        "error: no tidings store at .tidings/tidings.db; "
        "create one with 'tidings topics create NAME' or pass --url\n"
    )
    assert os.listdir(tmp_path) == []


def test_a_missing_store_given_by_url_is_named(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert run(["--url", f"sqlite://{tmp_path}/db/bus.db?fsync=normal", "topics", "list"]) == 1
    assert f"no tidings store at {tmp_path}/db/bus.db;" in capsys.readouterr().err
    assert os.listdir(tmp_path) == []
