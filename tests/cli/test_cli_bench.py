"""`tidings bench` finds the suite of a checkout, and says what to do where there is none."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner

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
