"""`tidings bench` finds the suite of a checkout, and says what to do where there is none."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from tests.bench_smoke.bench_run import ROOT
from tidings.cli import bench as bench_command
from tidings.cli.main import run


def test_outside_a_checkout_it_says_where_to_run_it(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr(bench_command, "_checkouts", lambda: [tmp_path])
    assert run(["bench", "--quick"]) == 1
    error = capsys.readouterr().err
    assert error.startswith("error: the benchmark suite is not installed with tidings")
    assert "checkout" in error and "make bench" in error


def test_help_names_the_options() -> None:
    result = CliRunner().invoke(bench_command.bench, ["--help"])
    assert result.exit_code == 0
    for option in ("--quick", "--only", "--results"):
        assert option in result.output


@pytest.mark.slow
def test_off_a_terminal_each_scenario_gets_one_plain_line_on_stderr(tmp_path: Path) -> None:
    tidings_cli = str(Path(sys.executable).parent / "tidings")
    command = [tidings_cli, "bench", "--quick", "--only", "es", "--results", str(tmp_path)]
    done = subprocess.run(
        command, cwd=ROOT, capture_output=True, text=True, timeout=300, check=False
    )
    assert done.returncode == 0, done.stderr
    assert "\r" not in done.stderr
    steps = [line for line in done.stderr.splitlines() if line.startswith("bench  ")]
    assert [line.rsplit("  ", 1)[0] for line in steps] == ["bench  raw (1/2)", "bench  es (2/2)"]
    assert all(re.fullmatch(r"\d+:\d\d elapsed", line.rsplit("  ", 1)[1]) for line in steps)
