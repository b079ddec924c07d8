"""The lock check that `make` runs before installing: a stale lock stops set-up, named."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def checkout(tmp_path: Path) -> Path:
    """A copy of the files the check reads, laid out as in the repository."""
    (tmp_path / "scripts").mkdir()
    shutil.copy(ROOT / "scripts" / "lockfile.py", tmp_path / "scripts")
    for name in ("pyproject.toml", "requirements.lock"):
        shutil.copy(ROOT / name, tmp_path)
    return tmp_path


def check(root: Path) -> subprocess.CompletedProcess[str]:
    """Run the check as `make` does."""
    return subprocess.run(
        [sys.executable, str(root / "scripts" / "lockfile.py"), "check"],
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )


def test_the_committed_lock_matches_pyproject(tmp_path: Path) -> None:
    assert check(checkout(tmp_path)).returncode == 0


def test_a_changed_dependency_makes_the_lock_stale(tmp_path: Path) -> None:
    root = checkout(tmp_path)
    pyproject = root / "pyproject.toml"
    pyproject.write_text(pyproject.read_text().replace('"click>=8.1"', '"click>=8.2"'))
    result = check(root)
    assert result.returncode == 1
    assert "requirements.lock is stale" in result.stderr
    assert "make lock" in result.stderr


def test_a_comment_or_tool_setting_leaves_the_lock_fresh(tmp_path: Path) -> None:
    root = checkout(tmp_path)
    pyproject = root / "pyproject.toml"
    text = pyproject.read_text().replace('"click>=8.1",', '"click>=8.1",  # the CLI')
    pyproject.write_text(text.replace("line-length = 100", "line-length = 99"))
    assert check(root).returncode == 0


def test_a_missing_lock_says_how_to_make_one(tmp_path: Path) -> None:
    root = checkout(tmp_path)
    (root / "requirements.lock").unlink()
    result = check(root)
    assert result.returncode == 1
    assert "make lock" in result.stderr
