"""The log engine's tail: the last batches appended to a partition, read by readers near the end."""

from __future__ import annotations

from tidings.core import batch as codec
from tidings.engines.log.store import Appended
from tidings.engines.log.tail import TAIL_BATCHES, TAIL_BYTES, Tail


def appended(base: int, count: int, size: int = 10) -> Appended:
    """A batch of `count` records of `size` bytes stored at `base`."""
    values = [bytes([65 + (base + i) % 26]) * size for i in range(count)]
    batch = codec.encode(values, None, [1000 + base + i for i in range(count)])
    return Appended("t", 0, base, batch.data, base + count)


def offsets(tail: Tail, position: int) -> list[int] | None:
    """The offsets a reader at `position` gets from the tail (None: read the store)."""
    records = tail.records_from(position)
    return None if records is None else [r.offset for r in records]


def test_a_reader_at_the_end_gets_nothing_and_one_inside_gets_the_rest() -> None:
    tail = Tail(appended(5, 3))
    tail.add(appended(8, 2))
    assert offsets(tail, 10) == []
    assert offsets(tail, 5) == [5, 6, 7, 8, 9]
    assert offsets(tail, 7) == [7, 8, 9]
    assert offsets(tail, 8) == [8, 9]


def test_a_reader_before_the_tail_or_past_the_end_reads_the_store() -> None:
    tail = Tail(appended(5, 3))
    assert offsets(tail, 4) is None
    assert offsets(tail, 11) is None


def test_records_are_decoded_once_and_every_reader_gets_its_own_list() -> None:
    tail = Tail(appended(0, 3))
    first = tail.records_from(0)
    second = tail.records_from(0)
    assert first is not None and second is not None
    assert first == second and first is not second
    first.clear()
    assert offsets(tail, 0) == [0, 1, 2]
    assert [r.value for r in second] == [b"A" * 10, b"B" * 10, b"C" * 10]


def test_a_batch_that_does_not_follow_the_last_starts_the_tail_afresh() -> None:
    tail = Tail(appended(0, 3))
    tail.add(appended(5, 2))  # offsets 3 and 4 were appended by another process
    assert offsets(tail, 3) is None
    assert offsets(tail, 0) is None
    assert offsets(tail, 5) == [5, 6]


def test_the_tail_keeps_a_bounded_number_of_batches_and_bytes() -> None:
    tail = Tail(appended(0, 1))
    for base in range(1, TAIL_BATCHES + 5):
        tail.add(appended(base, 1))
    end = TAIL_BATCHES + 5
    assert offsets(tail, end - TAIL_BATCHES) == list(range(end - TAIL_BATCHES, end))
    assert offsets(tail, end - TAIL_BATCHES - 1) is None

    big = TAIL_BYTES // 3  # three of them, with their headers, pass the limit
    tail = Tail(appended(0, 1, big))
    tail.add(appended(1, 1, big))
    tail.add(appended(2, 1, big))
    assert offsets(tail, 0) is None
    assert offsets(tail, 1) == [1, 2]
    tail.add(appended(3, 1, TAIL_BYTES * 2))  # the newest batch stays, however large
    assert offsets(tail, 3) == [3]
