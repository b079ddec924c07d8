"""The suite's figures: one row per scenario and system, the table, and the JSON document.

Each row compares a tidings figure with the best peer of its scenario and variant: for
throughput, tidings records/s / the best peer's (above 1: tidings leads); for latency,
tidings p50 / the best peer's p50 (below 1: tidings leads). Scaling rows compare with
the first step of their own series instead, and raw limits compare with nothing.
"""

from __future__ import annotations

import json
import statistics
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any, Literal

from bench.stats import Latency

Role = Literal["tidings", "peer", "limit"]
Metric = Literal["rate", "latency"]

HEADINGS = (
    "scenario",
    "system",
    "records/s",
    "p50",
    "p99",
    "durability",
    "of raw limit",
    "tidings / best peer",
)


@dataclass(frozen=True)
class Figure:
    """One system's result in one scenario (and variant: a value size, a count)."""

    scenario: str
    variant: str
    system: str
    role: Role
    durability: str
    metric: Metric = "rate"
    """What the ratio compares: records/s (higher is better) or p50 (lower is better)."""
    rate: float | None = None
    """records/s (events/s, loads/s): the median of `runs`."""
    p50: float | None = None
    """seconds."""
    p99: float | None = None
    runs: list[float] = field(default_factory=list)
    """records/s of each run (or p50 of each run, for latency)."""
    how: str = ""
    """What the system does for this figure."""
    limit: float | None = None
    """The matching raw limit of the machine, records/s."""
    ratio: str = ""
    """Filled in by compare()."""

    @property
    def name(self) -> str:
        """The scenario with its variant."""
        return f"{self.scenario}, {self.variant}" if self.variant else self.scenario


def _leads(ratio: float, higher_is_better: bool) -> str:
    return "leads" if (ratio > 1) == higher_is_better else "trails"


def compare(figures: list[Figure]) -> list[Figure]:
    """Every figure with its ratio filled in (scaling ones keep their own)."""
    out = []
    for f in figures:
        if f.ratio or f.role != "tidings":
            out.append(f)
            continue
        peers = [
            p
            for p in figures
            if p.role == "peer" and p.scenario == f.scenario and p.variant == f.variant
        ]
        ratio = ""
        if f.metric == "rate" and f.rate and any(p.rate for p in peers):
            best = max(p.rate or 0.0 for p in peers)
            ratio = f"{f.rate / best:.2f}x ({_leads(f.rate / best, True)})"
        elif f.metric == "latency" and f.p50 and any(p.p50 for p in peers):
            best = min(p.p50 for p in peers if p.p50)
            ratio = f"p50 {f.p50 / best:.2f}x ({_leads(f.p50 / best, False)})"
        out.append(replace(f, ratio=ratio or "-"))
    return out


def series(figures: list[Figure], unit: str = "of 1") -> list[Figure]:
    """A scaling series: each figure's rate as a multiple of the first one's."""
    first = figures[0].rate or 0.0
    return [
        replace(f, ratio=f"{(f.rate or 0.0) / first:.2f}x {unit}" if first else "-")
        for f in figures
    ]


def with_latency(
    f: Figure, runs: Sequence[Latency], rates: Sequence[float] | None = None
) -> Figure:
    """`f` with the medians of `runs`: p50, p99, and records/s (theirs, or `rates`)."""
    rates = [r.rate for r in runs] if rates is None else rates
    return replace(
        f,
        rate=statistics.median(rates),
        p50=statistics.median(r.p50 for r in runs),
        p99=statistics.median(r.p99 for r in runs),
        runs=list(rates) if f.metric == "rate" else [r.p50 for r in runs],
    )


def rate_text(x: float | None) -> str:
    """records/s as the table shows them."""
    return "-" if x is None else f"{x:,.0f}"


def time_text(x: float | None) -> str:
    """A duration in µs or ms, as the table shows them."""
    if x is None:
        return "-"
    return f"{x * 1e6:,.0f} µs" if x < 1e-3 else f"{x * 1e3:,.2f} ms"


def cells(f: Figure) -> tuple[str, ...]:
    """A figure's cells, in HEADINGS order."""
    of_limit = f"{f.rate / f.limit:.0%}" if f.rate and f.limit else "-"
    return (
        f.name,
        f.system,
        rate_text(f.rate),
        time_text(f.p50),
        time_text(f.p99),
        f.durability,
        of_limit,
        f.ratio or "-",
    )


def render(figures: list[Figure]) -> str:
    """The figures as one aligned text table, a rule between scenarios."""
    rows = [cells(f) for f in figures]
    widths = [max(len(c) for c in column) for column in zip(HEADINGS, *rows, strict=True)]

    def line(row: tuple[str, ...]) -> str:
        return "  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip()

    text = [line(HEADINGS), line(tuple("-" * w for w in widths))]
    previous = None
    for f, row in zip(figures, rows, strict=True):
        if previous is not None and f.scenario.split(" ")[0] != previous:
            text.append("")
        previous = f.scenario.split(" ")[0]
        text.append(line(row))
    return "\n".join(text)


def write_json(path: Path, meta: dict[str, Any], figures: list[Figure]) -> None:
    """The run's settings and every figure (with its table cells) as JSON."""
    path.parent.mkdir(parents=True, exist_ok=True)
    doc = {
        **meta,
        "headings": list(HEADINGS),
        "figures": [{**asdict(f), "cells": list(cells(f))} for f in figures],
    }
    path.write_text(json.dumps(doc, indent=2) + "\n")
