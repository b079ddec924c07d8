"""Small timing helpers shared by the raw and the tidings measurements."""

from __future__ import annotations

import statistics
from collections.abc import Callable, Sequence
from dataclasses import dataclass

VALUE_SIZE = 100


def value(size: int = VALUE_SIZE) -> bytes:
    """The record value every measurement writes."""
    return b"v" * size


@dataclass(frozen=True)
class Latency:
    """Percentiles of a set of round trips, in seconds, and the rate they achieved."""

    p50: float
    p99: float
    rate: float
    """Operations per second over the whole run (all callers together)."""
    count: int

    @classmethod
    def of(cls, samples: Sequence[float], elapsed: float) -> Latency:
        """Summarise `samples` (seconds each) taken in `elapsed` seconds of wall time."""
        ordered = sorted(samples)
        return cls(
            p50=percentile(ordered, 0.50),
            p99=percentile(ordered, 0.99),
            rate=len(ordered) / elapsed if elapsed > 0 else 0.0,
            count=len(ordered),
        )


def percentile(ordered: Sequence[float], q: float) -> float:
    """The q-quantile of already sorted samples (nearest rank)."""
    if not ordered:
        return 0.0
    return ordered[min(len(ordered) - 1, max(0, round(q * len(ordered)) - 1))]


def median_of(repeat: int, run: Callable[[int], float]) -> float:
    """The median of `run(i)` (a rate it measured itself) over `repeat` runs."""
    return statistics.median([run(i) for i in range(max(1, repeat))])
