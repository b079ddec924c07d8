"""The stored batch format round-trips every record exactly."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tidings.core import batch as codec
from tidings.core.errors import StoreCorruptError

blobs = st.one_of(st.none(), st.binary(max_size=64))
headers = st.lists(st.tuples(st.text(max_size=8), blobs), max_size=3).map(tuple)


@given(
    st.lists(st.tuples(blobs, blobs, st.integers(0, 2**50), headers), min_size=1, max_size=50),
    st.integers(0, 2**40),
)
def test_round_trip(records: list[tuple[bytes | None, bytes | None, int, Any]], base: int) -> None:
    values = [r[0] for r in records]
    keys = [r[1] for r in records]
    timestamps = [r[2] for r in records]
    hdrs = [r[3] for r in records]
    encoded = codec.encode(values, keys, timestamps, hdrs)
    decoded = codec.decode("t", 3, base, encoded.data)
    assert [(r.value, r.key, r.timestamp, r.headers) for r in decoded] == list(
        zip(values, keys, timestamps, hdrs, strict=True)
    )
    assert [r.offset for r in decoded] == list(range(base, base + len(records)))
    assert encoded.max_timestamp == max(timestamps)


def test_sparse_offsets_after_compaction() -> None:
    encoded = codec.encode([b"a", b"b"], [b"k1", b"k2"], [5, 6], None, [2, 7])
    decoded = codec.decode("t", 0, 100, encoded.data)
    assert [r.offset for r in decoded] == [102, 107]
    assert encoded.last_delta == 7


def test_truncated_batch_is_reported() -> None:
    encoded = codec.encode([b"x" * 10], None, [1])
    with pytest.raises(StoreCorruptError):
        codec.decode("t", 0, 0, encoded.data[:12])
    with pytest.raises(StoreCorruptError):
        codec.decode("t", 0, 0, b"XX" + encoded.data[2:])


def test_a_batch_of_an_unknown_version_or_cut_short_is_reported() -> None:
    one = codec.encode_one(b"x" * 10, None, 1, ())
    newer = one.data[:2] + bytes([codec.VERSION + 1]) + one.data[3:]
    with pytest.raises(StoreCorruptError, match="unknown format"):
        codec.decode("t", 0, 0, newer)
    with pytest.raises(StoreCorruptError, match="unknown format"):
        codec.info(newer)
    with pytest.raises(StoreCorruptError, match="truncated"):
        codec.decode("t", 0, 0, one.data[:-1])
    with pytest.raises(StoreCorruptError, match="truncated"):
        codec.info(one.data[:8])
