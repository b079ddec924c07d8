"""The suite's chart: one PNG, a panel per scenario, tidings in blues beside its peers."""

from __future__ import annotations

from collections.abc import Callable
from functools import partial
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only, no display

import matplotlib.pyplot as plt
from matplotlib.axes import Axes

from bench.report import Figure

TIDINGS_COLOURS = ("#08306b", "#2171b5", "#6baed6", "#9ecae1", "#c6dbef")
PEER_COLOURS = ("#d95f02", "#7570b3", "#e7298a", "#66a61e", "#e6ab02", "#a6761d", "#666666")

BARS: tuple[tuple[str, str, str], ...] = (
    ("1. durable log: produce", "rate", "durable log: produce (records/s)"),
    ("1. durable log: consume", "rate", "durable log: consume (records/s)"),
    ("1. durable log: publish round trip", "p50", "publish round trip, 100 B (p50 µs; ▲ p99)"),
    ("2. queue, per-message ack", "rate", "queue, per-message ack (records/s)"),
    ("3. pub/sub latency", "p50", "pub/sub latency (p50 µs; ▲ p99)"),
    ("4. event store", "rate", "event store (events/s)"),
    ("8. engine overhead", "rate", "tidings engines vs bare clients (records/s)"),
)
"""(scenario, what the bars show, panel title) of each bar panel."""
LINES: tuple[tuple[str, str], ...] = (
    ("6. scaling", "scaling: x of 1 as partitions / producers / consumers grow"),
    ("6. stored log", "stored log: x of the smallest log as it grows"),
)
"""(scenario prefix, panel title) of each line panel."""


def _colours(figures: list[Figure]) -> dict[str, str]:
    """A colour per system, the same in every panel."""
    ours = list(dict.fromkeys(f.system for f in figures if f.role == "tidings"))
    theirs = list(dict.fromkeys(f.system for f in figures if f.role == "peer"))
    colours = {name: TIDINGS_COLOURS[i % len(TIDINGS_COLOURS)] for i, name in enumerate(ours)}
    colours |= {name: PEER_COLOURS[i % len(PEER_COLOURS)] for i, name in enumerate(theirs)}
    return colours


def _bars(ax: Axes, figures: list[Figure], shown: str, colours: dict[str, str]) -> None:
    variants = list(dict.fromkeys(f.variant for f in figures))
    systems = list(dict.fromkeys(f.system for f in figures))
    width = 0.8 / len(systems)
    scale = 1e6 if shown == "p50" else 1.0
    for j, system in enumerate(systems):
        xs, heights, tops = [], [], []
        for i, variant in enumerate(variants):
            f = next((f for f in figures if f.system == system and f.variant == variant), None)
            height = None if f is None else (f.p50 if shown == "p50" else f.rate)
            if f is not None and height:
                xs.append(i + (j - (len(systems) - 1) / 2) * width)
                heights.append(height * scale)
                tops.append((f.p99 or 0.0) * scale)
        ax.bar(xs, heights, width, label=system, color=colours.get(system, "#999999"))
        if shown == "p50":
            ax.scatter(xs, tops, marker="^", s=12, color="black", zorder=3)
    ax.set_yscale("log")
    ax.set_xticks(range(len(variants)), variants, fontsize=7, rotation=12)
    ax.legend(fontsize=6, loc="best")


def _lines(ax: Axes, figures: list[Figure]) -> None:
    for scenario in dict.fromkeys(f.scenario for f in figures):
        series = [f for f in figures if f.scenario == scenario and f.rate]
        first = series[0].rate or 1.0
        xs = [float(f.variant.split()[0].replace(",", "")) for f in series]
        ys = [(f.rate or 0.0) / first for f in series]
        label = scenario.split(": ", 1)[-1]
        ax.plot(xs, ys, marker="o", label=label)
    ax.axhline(1.0, color="grey", linewidth=0.8, linestyle="--")
    ax.set_xscale("log")
    ticks = sorted({float(f.variant.split()[0].replace(",", "")) for f in figures})
    ax.set_xticks(ticks, [f"{t:,.0f}" for t in ticks], fontsize=7)
    ax.minorticks_off()
    ax.legend(fontsize=6, loc="best")


def draw(figures: list[Figure], path: Path, title: str) -> None:
    """Every scenario of `figures` that has a panel, into one PNG at `path`."""
    colours = _colours(figures)
    panels: list[tuple[str, Callable[[Axes], None]]] = []
    for scenario, shown, heading in BARS:
        chosen = [f for f in figures if f.scenario == scenario]
        if chosen:
            panels.append((heading, partial(_bars, figures=chosen, shown=shown, colours=colours)))
    for prefix, heading in LINES:
        chosen = [f for f in figures if f.scenario.startswith(prefix)]
        if chosen:
            panels.append((heading, partial(_lines, figures=chosen)))
    columns = 3
    rows = max(1, -(-len(panels) // columns))
    fig, axes = plt.subplots(rows, columns, figsize=(6 * columns, 4 * rows), squeeze=False)
    for ax, (heading, paint) in zip(axes.flat, panels, strict=False):
        paint(ax)
        ax.set_title(heading, fontsize=9)
        ax.grid(axis="y", linewidth=0.3)
    for ax in list(axes.flat)[len(panels) :]:
        ax.set_visible(False)
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
