"""A wheel of this checkout, installed with no extra into an empty venv, gives a working
`tidings` command. Built and installed offline, from the lock's pins in uv's cache."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
UV = ROOT / ".uv" / "bin" / "uv"
BASE = ("click", "crc32c", "cramjam")
"""The dependencies of a plain `pip install tidings`."""


def sh(*args: str | Path, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    """Run a command with no $TIDINGS_URL or $PYTHONPATH of the test run leaking in."""
    env = {k: v for k, v in os.environ.items() if k not in ("TIDINGS_URL", "PYTHONPATH")}
    return subprocess.run(
        [str(a) for a in args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )


def ok(*args: str | Path, cwd: Path | None = None) -> str:
    """Run a command that must succeed; its stdout."""
    result = sh(*args, cwd=cwd)
    assert result.returncode == 0, (args, result.stdout, result.stderr)
    return result.stdout


def locked_pins() -> list[str]:
    """`name==version` of the base dependencies, as requirements.lock pins them."""
    lock = (ROOT / "requirements.lock").read_text()
    pins = [re.search(rf"^{name}==\S+", lock, re.MULTILINE) for name in BASE]
    assert all(pins), f"requirements.lock does not pin all of {BASE}"
    return [pin[0] for pin in pins if pin]


@pytest.mark.slow
def test_a_wheel_with_no_extra_installs_and_runs(tmp_path: Path) -> None:
    assert UV.exists(), f"{UV} is missing; `make setup` installs it"
    source = tmp_path / "source"
    source.mkdir()
    shutil.copy(ROOT / "pyproject.toml", source)
    shutil.copy(ROOT / "README.md", source)
    shutil.copytree(
        ROOT / "src",
        source / "src",
        ignore=shutil.ignore_patterns("__pycache__", "*.so", "*.egg-info"),
    )
    # this venv's setuptools (the lock's) builds it: nothing is downloaded
    build: list[str | Path] = [
        "build",
        "--wheel",
        "--offline",
        "--no-build-isolation",
        "--python",
        sys.executable,
    ]
    ok(UV, *build, "--out-dir", tmp_path / "dist", source)
    (wheel,) = (tmp_path / "dist").glob("tidings-*.whl")
    venv = tmp_path / "venv"
    ok(UV, "venv", "--quiet", "--offline", "--python", sys.executable, venv)
    python, command = venv / "bin" / "python", venv / "bin" / "tidings"
    install: list[str | Path] = ["pip", "install", "--offline", "--no-deps", "--python", python]
    installed = sh(UV, *install, wheel, *locked_pins())
    assert installed.returncode == 0, f"cannot install from uv's cache: {installed.stderr}"
    names = "import importlib.metadata as m; print(*sorted(d.name for d in m.distributions()))"
    assert ok(python, "-c", names).split() == sorted(["tidings", *BASE])

    work = tmp_path / "work"
    work.mkdir()
    assert ok(command, "--version", cwd=work) == "tidings, version 0.1.0\n"
    ok(command, "topics", "create", "orders", cwd=work)
    assert ok(command, "topics", "list", cwd=work).splitlines()[1].split()[0] == "orders"
    assert "serve    Serve the bus" in ok(python, "-m", "tidings", "--help", cwd=work)
    served = sh(command, "serve", cwd=work)
    assert (served.returncode, served.stderr) == (
        1,
        'error: tidings serve needs the server extra: pip install "tidings[server]"\n',
    )
    assert sorted(os.listdir(work)) == [".tidings"]
