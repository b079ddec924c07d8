"""How fast the command line starts: `python -m bench.cli_startup [--runs N]`.

Times `tidings --help`, `python -c "import tidings"` and an empty Python beside them, each
run in a fresh process, and prints the median and the fastest run. Bytecode is written and
used, as in an installed package (with PYTHONDONTWRITEBYTECODE every run would compile
every module again), and a first run of each, which writes it, is not counted. The aim is
`tidings --help` under 150 ms.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path


def commands() -> dict[str, list[str]]:
    """What is timed: a label and its argv."""
    script = shutil.which("tidings", path=str(Path(sys.executable).parent))
    return {
        "tidings --help": [*([script] if script else [sys.executable, "-m", "tidings"]), "--help"],
        'python -c "import tidings"': [sys.executable, "-c", "import tidings"],
        'python -c "pass"': [sys.executable, "-c", "pass"],
    }


def timed_runs(argv: list[str], runs: int, env: dict[str, str]) -> list[float]:
    """Seconds each of `runs` fresh processes of `argv` took, after one uncounted run."""
    subprocess.run(argv, env=env, stdout=subprocess.DEVNULL, check=True)
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        subprocess.run(argv, env=env, stdout=subprocess.DEVNULL, check=True)
        times.append(time.perf_counter() - start)
    return times


def main(argv: list[str] | None = None) -> None:
    """Time each command and print one row per command."""
    parser = argparse.ArgumentParser(prog="python -m bench.cli_startup", description=__doc__)
    parser.add_argument("--runs", type=int, default=20, help="runs per command (default 20)")
    args = parser.parse_args(argv)
    env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
    print(f"{'command':<28} {'median ms':>10} {'min ms':>8}   ({args.runs} runs each)")
    for label, command in commands().items():
        times = timed_runs(command, args.runs, env)
        print(f"{label:<28} {statistics.median(times) * 1e3:>10.1f} {min(times) * 1e3:>8.1f}")


if __name__ == "__main__":
    main()
