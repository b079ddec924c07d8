"""Share groups (queues) as pure transitions over one partition's in-flight window.

A share group reads a topic as a queue, on the model of Kafka's KIP-932: competing
consumers *acquire* records under a lock that expires, then *accept*, *release* or
*reject* them. For each partition the group keeps only a window: every offset below
`start` is done, offsets from `end` on were never looked at, and the offsets between are
covered by runs of records in one state. Neighbouring runs that agree merge, so a window
costs a few entries however many records it spans, and nothing grows with the backlog.

A store applies these functions atomically, as it does the consumer-group transitions.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import NamedTuple

from tidings.engines.base import Ack, AckKind

AVAILABLE = 0
"""May be acquired once `until` (ms) has passed: 0, or the end of a delay."""
ACQUIRED = 1
"""Locked by `member` until `until`."""
DONE = 2
"""Accepted, archived or dead-lettered: never delivered again."""


@dataclass(slots=True)
class Run:
    """Consecutive offsets `first..last` in one state."""

    first: int
    last: int
    state: int
    deliveries: int = 0
    until: int = 0
    member: str | None = None

    def same(self, other: Run) -> bool:
        """Whether `other` carries the same state, so the two can merge."""
        return (self.state, self.deliveries, self.until, self.member) == (
            other.state,
            other.deliveries,
            other.until,
            other.member,
        )


@dataclass(slots=True)
class ShareState:
    """One share group's window over one partition."""

    start: int = -1
    """Every offset below is done; -1 until the first acquisition places the window."""
    end: int = -1
    """The first offset not yet in the window."""
    runs: list[Run] = field(default_factory=list)

    def to_json(self) -> str:
        """Serialize for storage."""
        runs = [[r.first, r.last, r.state, r.deliveries, r.until, r.member] for r in self.runs]
        return json.dumps({"s": self.start, "e": self.end, "r": runs}, separators=(",", ":"))

    @classmethod
    def from_json(cls, text: str) -> ShareState:
        """Deserialize from storage."""
        raw = json.loads(text)
        return cls(raw["s"], raw["e"], [Run(*r) for r in raw["r"]])

    def count(self, state: int, now: int | None = None, due: bool = True) -> int:
        """Records in `state`; for AVAILABLE with `now`, only those due (or not yet due)."""
        return sum(
            r.last - r.first + 1
            for r in self.runs
            if r.state == state and (now is None or (r.until <= now) == due)
        )


class Fresh(NamedTuple):
    """Records read from the log at the window's end, for the window to take in."""

    records: Sequence[tuple[int, int]]
    """(offset, not_before_ms) of each record read, ascending; 0 means deliver at once."""
    read_end: int
    """The offset after the last one read: offsets below it without a record are gaps."""


class Taken(NamedTuple):
    """Offsets handed to one member: to deliver, and to dead-letter on the group's behalf."""

    deliver: list[tuple[int, int, int]]
    """(first, last, delivery count) runs to hand to the consumer."""
    dead: list[tuple[int, int, int]]
    """(first, last, delivery count) runs past max deliveries: dead-letter, then accept."""


class Settled(NamedTuple):
    """What acknowledging did."""

    refused: list[int]
    """Offsets whose lock this member no longer holds: nothing was changed for them."""
    dead: list[tuple[int, int]]
    """(offset, delivery count) to dead-letter, then accept (still locked to the member)."""


def place(state: ShareState, start: int) -> None:
    """Put an empty window at `start` (the log start or end, by the reset policy)."""
    if state.start < 0:
        state.start = state.end = start
        state.runs = []


def skip_to(state: ShareState, log_start: int) -> None:
    """Forget offsets that retention deleted from the log."""
    if state.start < log_start:
        if state.end <= log_start:
            state.start = state.end = log_start
            state.runs = []
            return
        _assign(state, Run(state.start, log_start - 1, DONE))
        _tidy(state)


def acquire(
    state: ShareState,
    member: str,
    now: int,
    *,
    limit: int,
    lock_ms: int,
    max_deliveries: int,
    fresh: Fresh,
    max_locks: int,
) -> Taken:
    """Lock up to `limit` records for `member`: released ones first, then new ones."""
    _expire(state, now)
    taken = Taken([], [])
    limit = min(limit, max_locks - state.count(ACQUIRED))
    lock = now + lock_ms
    for run in list(state.runs):
        if limit <= 0:
            break
        if run.state != AVAILABLE or run.until > now:
            continue
        if run.deliveries >= max_deliveries:
            _assign(state, Run(run.first, run.last, ACQUIRED, run.deliveries, lock, member))
            taken.dead.append((run.first, run.last, run.deliveries))
            continue
        last = min(run.last, run.first + limit - 1)
        _assign(state, Run(run.first, last, ACQUIRED, run.deliveries + 1, lock, member))
        taken.deliver.append((run.first, last, run.deliveries + 1))
        limit -= last - run.first + 1
    _take_fresh(
        state, Run(0, 0, ACQUIRED, 1, lock, member), now=now, limit=limit, fresh=fresh, taken=taken
    )
    _tidy(state)
    return taken


def _take_fresh(
    state: ShareState, locked: Run, *, now: int, limit: int, fresh: Fresh, taken: Taken
) -> None:
    """Extend the window over records read at its end, acquiring the due ones as `locked`."""
    expected = state.end
    for offset, not_before in fresh.records:
        if offset < state.end:
            continue  # another consumer took it in since the read
        if not_before <= now and limit <= 0:
            return
        if offset > expected:
            _append(state, Run(expected, offset - 1, DONE))  # gap left by compaction
        if not_before > now:
            _append(state, Run(offset, offset, AVAILABLE, 0, not_before))
        else:
            _append(state, _part(locked, offset, offset))
            _extend(taken.deliver, offset, 1)
            limit -= 1
        expected = offset + 1
    if fresh.read_end > state.end:
        _append(state, Run(state.end, fresh.read_end - 1, DONE))  # a gap at the tail


def settle(
    state: ShareState, member: str, now: int, acks: Iterable[Ack], max_deliveries: int
) -> Settled:
    """Apply a member's acknowledgements; refuse those whose lock it no longer holds."""
    settled = Settled([], [])
    for ack in acks:
        run = _find(state, ack.offset)
        if run is None or run.state != ACQUIRED or run.member != member or run.until <= now:
            settled.refused.append(ack.offset)
            continue
        o = ack.offset
        if ack.kind == AckKind.ACCEPT:
            _assign(state, Run(o, o, DONE))
        elif ack.kind == AckKind.RENEW:
            _assign(state, Run(o, o, ACQUIRED, run.deliveries, now + ack.delay_ms, member))
        elif ack.kind == AckKind.RELEASE and run.deliveries < max_deliveries:
            _assign(state, Run(o, o, AVAILABLE, run.deliveries, now + ack.delay_ms))
        else:  # rejected, or released once too often: to the dead letters
            settled.dead.append((o, run.deliveries))
    _tidy(state)
    return settled


def _expire(state: ShareState, now: int) -> None:
    for run in state.runs:
        if run.state == ACQUIRED and run.until <= now:
            run.state, run.until, run.member = AVAILABLE, 0, None


def _find(state: ShareState, offset: int) -> Run | None:
    for run in state.runs:
        if run.first <= offset <= run.last:
            return run
    return None


def _extend(runs: list[tuple[int, int, int]], offset: int, deliveries: int) -> None:
    if runs and runs[-1][1] == offset - 1 and runs[-1][2] == deliveries:
        runs[-1] = (runs[-1][0], offset, deliveries)
    else:
        runs.append((offset, offset, deliveries))


def _append(state: ShareState, run: Run) -> None:
    """Add `run` at the end of the window."""
    last = state.runs[-1] if state.runs else None
    if last is not None and last.same(run) and last.last == run.first - 1:
        last.last = run.last
    else:
        state.runs.append(run)
    state.end = run.last + 1


def _assign(state: ShareState, new: Run) -> None:
    """Give the offsets of `new` (inside the window) its state, splitting runs."""
    out: list[Run] = []
    for run in state.runs:
        if run.last < new.first or run.first > new.last:
            out.append(run)
            continue
        if run.first < new.first:
            out.append(_part(run, run.first, new.first - 1))
        out.append(_part(new, max(run.first, new.first), min(run.last, new.last)))
        if run.last > new.last:
            out.append(_part(run, new.last + 1, run.last))
    state.runs = out


def _part(run: Run, first: int, last: int) -> Run:
    return Run(first, last, run.state, run.deliveries, run.until, run.member)


def _tidy(state: ShareState) -> None:
    """Merge neighbours that agree and move the start past leading done records."""
    merged: list[Run] = []
    for run in state.runs:
        if merged and merged[-1].same(run):
            merged[-1].last = run.last
        else:
            merged.append(run)
    while merged and merged[0].state == DONE:
        state.start = merged.pop(0).last + 1
    if not merged:
        state.start = state.end
    state.runs = merged
