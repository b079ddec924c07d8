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
    (tmp_path / "tests" / "streams").mkdir(parents=True)
    for name in (
        "pyproject.toml",
        "requirements.lock",
        "tests/streams/quix.in",
        "tests/streams/quix.lock",
    ):
        shutil.copy(ROOT / name, tmp_path / name)
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


def test_the_committed_locks_match_their_inputs(tmp_path: Path) -> None:
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


def test_a_changed_quix_requirement_makes_its_lock_stale(tmp_path: Path) -> None:
    root = checkout(tmp_path)
    requirements = root / "tests" / "streams" / "quix.in"
    requirements.write_text(requirements.read_text().replace("==3.28.1", "==3.28.0"))
    result = check(root)
    assert result.returncode == 1
    assert "tests/streams/quix.lock is stale" in result.stderr
    assert "requirements.lock" not in result.stderr
    assert "make lock" in result.stderr


def test_a_comment_in_the_quix_requirements_leaves_its_lock_fresh(tmp_path: Path) -> None:
    root = checkout(tmp_path)
    requirements = root / "tests" / "streams" / "quix.in"
    text = requirements.read_text().replace("==3.28.1", "==3.28.1  # the stream tests")
    requirements.write_text(f"# a note\n\n{text}")
    assert check(root).returncode == 0


def test_stamp_records_what_check_then_accepts(tmp_path: Path) -> None:
    root = checkout(tmp_path)
    requirements = root / "tests" / "streams" / "quix.in"
    requirements.write_text(requirements.read_text().replace("==3.28.1", "==3.28.0"))
    stamp = [sys.executable, str(root / "scripts" / "lockfile.py"), "stamp"]
    subprocess.run(stamp, check=True, timeout=60)
    assert check(root).returncode == 0
    assert (root / "requirements.lock").read_text() == (ROOT / "requirements.lock").read_text()
