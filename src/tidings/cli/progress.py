"""Progress of long commands, for a person: `orders  120,000/500,000 records  45,210/s  0:08 left`.

Lines go to stderr, so stdout stays the command's result. On a terminal the line is
redrawn in place (a carriage return) a few times a second. Anywhere else (a pipe, a log
file) each task gets a plain line every few seconds, one when it is done and one with its
last state at the end, so a log holds a handful of lines, never a flood.
"""

from __future__ import annotations

import math
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TextIO

LIVE_S = 0.2
"""How often a line is redrawn on a terminal."""
PLAIN_S = 5.0
"""How often a task gets a plain line where stderr is not a terminal."""


def duration(seconds: float) -> str:
    """Seconds as m:ss, or h:mm:ss from an hour on."""
    whole = max(0, round(seconds))
    hours, rest = divmod(whole, 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours}:{minutes:02}:{secs:02}" if hours else f"{minutes}:{secs:02}"


def progress_line(
    label: str, done: int, total: int | None, unit: str, *, rate: float | None, elapsed: float
) -> str:
    """One line: the count (of the total), the rate, and the time left (or taken)."""
    parts = [label, f"{done:,}/{total:,} {unit}" if total is not None else f"{done:,} {unit}"]
    if rate is not None:
        parts.append(f"{rate:,.0f}/s")
    if total is not None and done >= total:
        parts.append(f"done in {duration(elapsed)}")
    elif total is not None and rate:
        parts.append(f"{duration((total - done) / rate)} left")
    else:
        parts.append(f"{duration(elapsed)} elapsed")
    return "  ".join(parts)


@dataclass
class _Task:
    """What one label showed and has to show."""

    started: float
    first_done: int
    done: int
    total: int | None = None
    unit: str = ""
    now: float = 0.0
    shown_at: float = -math.inf
    shown_done: bool = False
    """Whether the last line written for it said it was done."""
    unshown: bool = False

    @property
    def finished(self) -> bool:
        return self.total is not None and self.done >= self.total

    def line(self, label: str) -> str:
        elapsed = self.now - self.started
        moved = self.done - self.first_done
        rate = moved / elapsed if elapsed > 0 and moved > 0 else None
        return progress_line(label, self.done, self.total, self.unit, rate=rate, elapsed=elapsed)


class Progress:
    """Progress lines of one command, on stderr unless `stream` is given."""

    def __init__(
        self, stream: TextIO | None = None, *, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.stream = sys.stderr if stream is None else stream
        self.clock = clock
        self.live = self.stream.isatty()
        self.interval_s = LIVE_S if self.live else PLAIN_S
        self._tasks: dict[str, _Task] = {}
        self._open: str | None = None
        """The label of the line drawn in place and not yet ended, on a terminal."""
        self._width = 0

    def update(
        self, label: str, done: int, total: int | None = None, unit: str = "records"
    ) -> None:
        """Note that `done` of `total` (None: not known) `unit` of `label` are through."""
        now = self.clock()
        task = self._tasks.get(label)
        if task is None or done < task.done:  # new, or started over (a mirror's next round)
            before = task
            task = self._tasks[label] = _Task(now, done, done)
            if before is not None:  # its pace of lines goes on
                task.shown_at, task.shown_done = before.shown_at, before.shown_done
        task.done, task.total, task.unit, task.now = done, total, unit, now
        if task.finished and not task.shown_done:
            self._write(label, task, keep=True)
        elif now - task.shown_at >= self.interval_s:
            self._write(label, task, keep=not self.live or task.finished)
        else:
            task.unshown = True

    @property
    def drawing(self) -> bool:
        """Whether a line is being redrawn in place (other output would break into it)."""
        return self._open is not None

    def message(self, text: str) -> None:
        """A line of its own (a step of a run), kept above the progress."""
        self._end_open()
        self.stream.write(text + "\n")
        self.stream.flush()

    def close(self) -> None:
        """Write each task's last state where it was not shown yet, and end the line."""
        order = sorted(self._tasks.items(), key=lambda item: item[0] != self._open)
        for label, task in order:
            if task.unshown or label == self._open:
                self._write(label, task, keep=True)
        self._tasks.clear()

    def _write(self, label: str, task: _Task, *, keep: bool) -> None:
        text = task.line(label)
        if self.live:
            self.stream.write("\r" + text.ljust(self._width) + ("\n" if keep else ""))
            self._open, self._width = (None, 0) if keep else (label, len(text))
        else:
            self.stream.write(text + "\n")
        self.stream.flush()
        task.shown_at, task.shown_done, task.unshown = task.now, task.finished, False

    def _end_open(self) -> None:
        if self._open is not None:
            self.stream.write("\n")
            self._open, self._width = None, 0
