"""`tidings bench`: the benchmark suite of a tidings checkout, tidings beside its peers.

The suite is the `bench` package at the root of the repository, not part of the installed
library: it is found in the current directory or beside the checkout this tidings was
installed from (`pip install -e`), and needs the checkout's `bench` dependency group.
"""

from __future__ import annotations

import importlib
import sys
from pathlib import Path
from types import ModuleType

import click

import tidings

CHECKOUT_HINT = (
    "run it from the root of a tidings checkout (git clone, then `make bench`, or "
    "`pip install --group bench -e .` and `tidings bench`)"
)


def _checkouts() -> list[Path]:
    """Where a checkout's bench/ may be: the current directory, then the source tree."""
    source = Path(tidings.__file__).resolve().parents[2]  # src/tidings/__init__.py
    return [Path.cwd(), source]


def load_suite() -> ModuleType:
    """The suite module of a checkout; a clear error when there is none or it cannot run."""
    for root in _checkouts():
        if (root / "bench" / "suite.py").is_file():
            if str(root) not in sys.path:
                sys.path.insert(0, str(root))
            break
    else:
        raise click.ClickException(
            f"the benchmark suite is not installed with tidings; {CHECKOUT_HINT}"
        )
    try:
        return importlib.import_module("bench.suite")
    except ModuleNotFoundError as e:
        raise click.ClickException(
            f"the benchmark suite needs {e.name!r}, which is missing: `make setup` in the "
            "checkout, or `pip install --group bench -e .` from its root"
        ) from e


@click.command()
@click.option("--quick", is_flag=True, help="Tiny sizes, one run each: a smoke test (< 2 min).")
@click.option(
    "--only",
    metavar="SCENARIOS",
    help="Run only these, comma-separated: log, queue, pubsub, es, raw, scaling, cdc, engines.",
)
@click.option(
    "--results",
    type=click.Path(file_okay=False, path_type=Path),
    help="Where to write the JSON and the chart (default: the checkout's bench/results).",
)
def bench(quick: bool, only: str | None, results: Path | None) -> None:
    """Run the benchmark suite: tidings beside Tansu, Redis, NATS and others, one table.

    Prints records/s, p50 and p99 of every scenario and system with its durability
    setting and the ratio tidings / best peer; writes bench/results/latest.json and
    latest.png (--quick: quick.json and quick.png).
    """
    suite = load_suite()
    argv = ["--quick"] if quick else []
    argv += ["--only", only] if only else []
    argv += ["--results", str(results)] if results else []
    code = suite.main(argv)
    if code:
        raise SystemExit(code)  # a scenario failed: the table says which
