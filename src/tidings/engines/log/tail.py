"""Tail: the batches a process appended last to one partition, for readers at the end."""

from __future__ import annotations

from bisect import bisect_left
from collections import deque
from operator import attrgetter

from tidings.core import batch as codec
from tidings.core.records import Record
from tidings.engines.log.store import Appended

TAIL_BATCHES = 16
"""At most this many batches are kept per partition."""
TAIL_BYTES = 64 * 1024
"""Older batches are dropped once the kept ones pass this size; the newest always stays."""

_offset = attrgetter("offset")


class _Batch:
    """One appended batch, decoded on first use."""

    __slots__ = ("appended", "records")

    def __init__(self, appended: Appended) -> None:
        self.appended = appended
        self.records: list[Record] | None = None

    def decoded(self) -> list[Record]:
        """The batch's records (shared between readers: never change the list)."""
        if self.records is None:
            a = self.appended
            self.records = codec.decode(a.topic, a.partition, a.base_offset, a.data)
        return self.records


class Tail:
    """The last batches appended to one partition, contiguous, each decoded once.

    A reader at most a few batches behind the end (a publisher that sent several records
    before the subscriber's task ran, say) reads them from here, neither reading the store
    nor decoding them again; subscribers in the same process share the decoded records.
    """

    __slots__ = ("_batches", "_size", "end_offset")

    def __init__(self, appended: Appended) -> None:
        self._batches: deque[_Batch] = deque()
        self._size = 0
        self.end_offset = appended.base_offset
        self.add(appended)

    def add(self, appended: Appended) -> None:
        """Keep a batch just appended; one that does not follow the last starts afresh."""
        batches = self._batches
        if appended.base_offset != self.end_offset:  # another process appended between
            batches.clear()
            self._size = 0
        batches.append(_Batch(appended))
        self._size += len(appended.data)
        self.end_offset = appended.end_offset
        while len(batches) > TAIL_BATCHES or (len(batches) > 1 and self._size > TAIL_BYTES):
            self._size -= len(batches.popleft().appended.data)

    def records_from(self, position: int) -> list[Record] | None:
        """A new list of the records from `position` on; None if the tail starts later."""
        first = self._first(position)
        if first is None:
            return None
        batches = self._batches
        if first == len(batches):
            return []
        records = batches[first].decoded()
        out = records[bisect_left(records, position, key=_offset) :]
        for i in range(first + 1, len(batches)):
            out.extend(batches[i].decoded())
        return out

    def batches_from(self, position: int) -> list[Appended] | None:
        """The stored batches holding records from `position` on; None if the tail starts later."""
        first = self._first(position)
        if first is None:
            return None
        return [self._batches[i].appended for i in range(first, len(self._batches))]

    def _first(self, position: int) -> int | None:
        """The index of the kept batch holding `position`; their count at the end, None if
        no kept batch holds it."""
        batches = self._batches
        if position >= self.end_offset:
            return len(batches) if position == self.end_offset else None
        first = len(batches) - 1
        while first >= 0 and batches[first].appended.base_offset > position:
            first -= 1
        return None if first < 0 else first
