"""Small timing helpers shared by the raw and the tidings measurements."""

from __future__ import annotations

import statistics
import time
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


class Arrivals:
    """Counts records as they come; the rate from the first arrival to the last."""

    def __init__(self, records: int, timeout_s: float = 300.0) -> None:
        self.records = records
        self.seen = 0
        self.after_first = 0
        self.first = self.last = 0.0
        self.deadline = time.monotonic() + timeout_s

    def got(self, count: int) -> None:
        """`count` records just arrived (0: none this time)."""
        if not count:
            if time.monotonic() > self.deadline:
                raise TimeoutError(f"read {self.seen:,} of {self.records:,} records")
            return
        self.last = time.perf_counter()
        if self.seen:
            self.after_first += count
        else:
            self.first = self.last
        self.seen += count

    @property
    def done(self) -> bool:
        """Whether every record has come."""
        return self.seen >= self.records

    def rate(self) -> float:
        """records/s after the first arrival."""
        if not self.after_first:
            raise ValueError(f"{self.records:,} records came at once: too few to time")
        return self.after_first / (self.last - self.first)
