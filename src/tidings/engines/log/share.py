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
from bisect import bisect_right
from collections.abc import Iterable
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
    priority: int = 0
    """Of the records (0-9): higher ones are acquired first."""

    def same(self, other: Run) -> bool:
        """Whether `other` carries the same state, so the two can merge."""
        return (self.state, self.deliveries, self.until, self.member, self.priority) == (
            other.state,
            other.deliveries,
            other.until,
            other.member,
            other.priority,
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
        runs = [
            [r.first, r.last, r.state, r.deliveries, r.until, r.member, r.priority]
            for r in self.runs
        ]
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

    records: Iterable[tuple[int, int, int, int]]
    """(first, last, not_before_ms, priority) spans of consecutive records that share a due
    time and a priority, ascending; not_before 0 means deliver at once. Iterated once,
    inside the store transaction."""
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
    """Lock up to `limit` records for `member`: released ones first, then new ones.

    When records carry priorities, everything read is taken into the window first and
    the due records are acquired highest priority first (offset order within one).
    """
    _expire(state, now)
    taken = Taken([], [])
    limit = min(limit, max_locks - state.count(ACQUIRED))
    lock = now + lock_ms
    spans = list(fresh.records)
    prioritised = any(span[3] for span in spans) or any(
        r.priority for r in state.runs if r.state == AVAILABLE
    )
    if prioritised:
        _take_in(state, Fresh(spans, fresh.read_end))
    candidates = [r for r in state.runs if r.state == AVAILABLE and r.until <= now]
    if prioritised:
        candidates.sort(key=lambda r: (-r.priority, r.first))
    for run in candidates:
        if limit <= 0:
            break
        if run.deliveries >= max_deliveries:
            _assign(
                state, _part(run, run.first, run.last, state=ACQUIRED, until=lock, member=member)
            )
            taken.dead.append((run.first, run.last, run.deliveries))
            continue
        last = min(run.last, run.first + limit - 1)
        acquired = _part(run, run.first, last, state=ACQUIRED, until=lock, member=member)
        acquired.deliveries += 1
        _assign(state, acquired)
        taken.deliver.append((run.first, last, run.deliveries + 1))
        limit -= last - run.first + 1
    if not prioritised:
        _take_fresh(
            state,
            Run(0, 0, ACQUIRED, 1, lock, member),
            now=now,
            limit=limit,
            fresh=Fresh(spans, fresh.read_end),
            taken=taken,
        )
    _tidy(state)
    return taken


def _take_in(state: ShareState, fresh: Fresh) -> None:
    """Extend the window over everything read, as available records."""
    expected = state.end
    for span_first, last, not_before, priority in fresh.records:
        if last < state.end:
            continue  # another consumer took them in since the read
        first = max(span_first, state.end)
        if first > expected:
            _append(state, Run(expected, first - 1, DONE))  # gap left by compaction
        _append(state, Run(first, last, AVAILABLE, 0, not_before, None, priority))
        expected = last + 1
    if fresh.read_end > state.end:
        _append(state, Run(state.end, fresh.read_end - 1, DONE))  # a gap at the tail


def _take_fresh(
    state: ShareState, locked: Run, *, now: int, limit: int, fresh: Fresh, taken: Taken
) -> None:
    """Extend the window over records read at its end, acquiring the due ones as `locked`.

    A span of consecutive due records is taken in one step, not record by record.
    """
    expected = state.end
    for span_first, last, not_before, _ in fresh.records:
        if last < state.end:
            continue  # another consumer took them in since the read
        first = max(span_first, state.end)
        due = not_before <= now
        if due and limit <= 0:
            return
        if first > expected:
            _append(state, Run(expected, first - 1, DONE))  # gap left by compaction
        if not due:
            _append(state, Run(first, last, AVAILABLE, 0, not_before))
        else:
            end = min(last, first + limit - 1)
            _append(state, _part(locked, first, end))
            if taken.deliver and taken.deliver[-1][1] == first - 1 and taken.deliver[-1][2] == 1:
                taken.deliver[-1] = (taken.deliver[-1][0], end, 1)
            else:
                taken.deliver.append((first, end, 1))
            limit -= end - first + 1
            if end < last:
                return
        expected = last + 1
    if fresh.read_end > state.end:
        _append(state, Run(state.end, fresh.read_end - 1, DONE))  # a gap at the tail


def settle(
    state: ShareState, member: str, now: int, acks: Iterable[Ack], max_deliveries: int
) -> Settled:
    """Apply a member's acknowledgements; refuse those whose lock it no longer holds.

    One pass over the acks in offset order: each is checked against the window as it
    was (bisect on the runs); consecutive accepts inside one held run become one change;
    the window is rebuilt once. A batch of k acks costs O(k log r + r), not O(k * r).
    """
    settled = Settled([], [])
    runs = state.runs
    firsts = [r.first for r in runs]
    ordered = sorted(acks, key=_ack_offset)  # stable: of two acks of one offset, the later wins
    changes: list[Run] = []
    i, n = 0, len(ordered)
    while i < n:
        ack = ordered[i]
        o = ack.offset
        k = bisect_right(firsts, o) - 1
        run = runs[k] if k >= 0 and runs[k].last >= o else None
        if ack.length > 1:  # a ranged accept: piece by piece over the runs it covers
            i += 1
            last_o = o + ack.length - 1
            while o <= last_o:
                run = runs[k] if 0 <= k < len(runs) and runs[k].first <= o <= runs[k].last else None
                end = min(last_o, run.last) if run is not None else o
                if run is None or run.state != ACQUIRED or run.member != member or run.until <= now:
                    settled.refused.extend(range(o, end + 1))
                else:
                    _add_change(changes, Run(o, end, DONE))
                o = end + 1
                k += 1
            continue
        if run is None or run.state != ACQUIRED or run.member != member or run.until <= now:
            settled.refused.append(o)
            i += 1
            continue
        i += 1
        if ack.kind == AckKind.ACCEPT:
            last = o
            while (
                i < n
                and ordered[i].offset == last + 1
                and last < run.last
                and ordered[i].kind == AckKind.ACCEPT
            ):
                last += 1
                i += 1
            new = Run(o, last, DONE)
        elif ack.kind == AckKind.RENEW:
            new = _part(run, o, o, state=ACQUIRED, until=now + ack.delay_ms, member=member)
        elif ack.kind == AckKind.RELEASE and run.deliveries < max_deliveries:
            new = _part(run, o, o, state=AVAILABLE, until=now + ack.delay_ms, member=None)
        else:  # rejected, or released once too often: to the dead letters
            settled.dead.append((o, run.deliveries))
            continue
        _add_change(changes, new)
    if changes:
        _assign_many(state, changes)
    _tidy(state)
    return settled


def _add_change(changes: list[Run], new: Run) -> None:
    if changes:
        prev = changes[-1]
        if prev.last >= new.first:  # an earlier ack of the same offset: the later wins
            prev.last = new.first - 1
            if prev.last < prev.first:
                changes.pop()
        elif prev.last == new.first - 1 and prev.same(new):
            prev.last = new.last
            return
    changes.append(new)


def _ack_offset(ack: Ack) -> int:
    return ack.offset


def _assign_many(state: ShareState, changes: list[Run]) -> None:
    """`_assign` for ascending, disjoint `changes` inside the window, in one pass."""
    out: list[Run] = []
    k = 0
    for run in state.runs:
        cursor = run.first
        while k < len(changes) and changes[k].first <= run.last:
            new = changes[k]
            if new.first > cursor:
                out.append(_part(run, cursor, new.first - 1))
            end = min(new.last, run.last)
            out.append(_part(new, max(new.first, cursor), end))
            cursor = end + 1
            if new.last > run.last:  # the change goes on into the next run
                changes[k] = _part(new, run.last + 1, new.last)
                break
            k += 1
        if cursor <= run.last:
            out.append(_part(run, cursor, run.last))
    state.runs = out


def _expire(state: ShareState, now: int) -> None:
    for run in state.runs:
        if run.state == ACQUIRED and run.until <= now:
            run.state, run.until, run.member = AVAILABLE, 0, None


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


def _part(
    run: Run,
    first: int,
    last: int,
    *,
    state: int | None = None,
    until: int | None = None,
    member: str | None = "",
) -> Run:
    """Offsets `first..last` of `run`, optionally in a new state (deliveries and priority kept)."""
    return Run(
        first,
        last,
        run.state if state is None else state,
        run.deliveries,
        run.until if until is None else until,
        run.member if member == "" else member,
        run.priority,
    )


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


def due(state: ShareState, now: int, max_deliveries: int) -> list[tuple[int, int]]:
    """The (first, last) spans the next acquisition would hand out from the window, in
    order: available and due, or locked under an expired lock, and not yet condemned."""
    return [
        (r.first, r.last)
        for r in state.runs
        if r.state in (AVAILABLE, ACQUIRED) and r.until <= now and r.deliveries < max_deliveries
    ]


def purge(state: ShareState, now: int, *, place_at: int, log_start: int, log_end: int) -> int:
    """Mark every record below `log_end` done except those under a live lock; the count.

    A new window is first placed at `place_at` (where the group would start reading), so
    purging a group that never read skips the backlog it would have received.
    """
    place(state, place_at)
    skip_to(state, log_start)
    _expire(state, now)
    purged = 0
    runs: list[Run] = []
    for run in state.runs:
        if run.state == AVAILABLE:
            purged += run.last - run.first + 1
        runs.append(Run(run.first, run.last, DONE) if run.state == AVAILABLE else run)
    state.runs = runs
    if log_end > state.end:
        purged += log_end - state.end
        _append(state, Run(state.end, log_end - 1, DONE))
    _tidy(state)
    return purged
