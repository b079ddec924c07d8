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


CONTINUES = "# continues the example above"


def python_examples() -> list[tuple[Path, int, str]]:
    """Every example a reader can run: a Python block with the blocks that continue it.

    A block runs on its own unless its first line is CONTINUES: then the reader was told
    it needs the block before it, and it runs after that block, in the same process.
    """
    examples: list[tuple[Path, int, str]] = []
    for page in PAGES:
        for line, code in blocks(page, "python"):
            if code.startswith(CONTINUES) and examples and examples[-1][0] == page:
                first, before = examples[-1][1:]
                examples[-1] = (page, first, f"{before}\n# line {line}\n{code}")
            else:
                assert not code.startswith(CONTINUES), f"{page.name}, line {line}: nothing above"
                examples.append((page, line, code))
    return examples


def example_id(example: tuple[Path, int, str]) -> str:
    """`page:line` of an example's first block."""
    page, line, _ = example
    return f"{page_id(page)}:{line}"


@pytest.mark.parametrize("example", python_examples(), ids=example_id)
def test_python_example_runs_and_quietly(example: tuple[Path, int, str], tmp_path: Path) -> None:
    # Copied as the page says, an example needs nothing else, and it leaves nothing behind
    # that complains at exit (a warning, an unclosed producer, a client's log line).
    page, line, code = example
    result = run([sys.executable, "-W", "error::ResourceWarning", "-c", code], tmp_path)
    assert result.returncode == 0, f"{page.name}, line {line}, failed:\n{result.stderr}"
    assert result.stderr == "", f"{page.name}, line {line}, wrote to stderr:\n{result.stderr}"


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
