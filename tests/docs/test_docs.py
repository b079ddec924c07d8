"""Every Python example and every shell example in the docs runs, in a fresh directory."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
FENCE = re.compile(r"^```(\w+)[^\n]*\n(.*?)^```", re.DOTALL | re.MULTILINE)
TIMEOUT_S = 60


def blocks(page: Path, language: str) -> list[tuple[int, str]]:
    """The fenced blocks of `language` in `page`, with the line each starts on."""
    text = page.read_text()
    return [
        (text.count("\n", 0, m.start()) + 1, m.group(2))
        for m in FENCE.finditer(text)
        if m.group(1) == language
    ]


def run(args: list[str], cwd: Path) -> subprocess.CompletedProcess[str]:
    """Run an example where no $TIDINGS_URL leaks in, with the project's tools on PATH."""
    env = {k: v for k, v in os.environ.items() if k != "TIDINGS_URL"}
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    return subprocess.run(
        args, cwd=cwd, env=env, capture_output=True, text=True, timeout=TIMEOUT_S, check=False
    )


def page_id(page: Path) -> str:
    """A short test id for a page."""
    return str(page.relative_to(ROOT))


@pytest.mark.parametrize("page", [p for p in PAGES if blocks(p, "python")], ids=page_id)
def test_python_examples_run(page: Path, tmp_path: Path) -> None:
    # The blocks of a page run in order in one process, as a reader follows the page.
    script = "\n".join(
        f"# {page.name}, line {line}\n{code}" for line, code in blocks(page, "python")
    )
    result = run([sys.executable, "-c", script], tmp_path)
    assert result.returncode == 0, f"{page.name} examples failed:\n{result.stderr}"


def shell_commands(page: Path) -> list[str]:
    """The `$ ` lines of a page's console blocks (other console blocks only show commands)."""
    return [
        line[2:]
        for _, code in blocks(page, "console")
        for line in code.splitlines()
        if line.startswith("$ ")
    ]


@pytest.mark.parametrize("page", [p for p in PAGES if shell_commands(p)], ids=page_id)
def test_shell_examples_run(page: Path, tmp_path: Path) -> None:
    script = "set -euo pipefail\n" + "\n".join(shell_commands(page))
    result = run(["bash", "-c", script], tmp_path)
    assert result.returncode == 0, f"{page.name} shell examples failed:\n{result.stderr}"
