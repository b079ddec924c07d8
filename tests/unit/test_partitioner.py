"""Kafka's partitioning: murmur2 as the Java client computes it, and sticky batches."""

from __future__ import annotations

import pytest

from tests.kafka_vectors import KAFKA_MURMUR2
from tidings.core.partitioner import (
    KeyPartitioner,
    StickyPartitioner,
    murmur2,
    partition_for_key,
)

# librdkafka's unittest_murmur2 (rdmurmur2.c): every tail length, and the empty key
LIBRDKAFKA_MURMUR2 = {
    b"kafka": 0xD067CF64,
    b"giberish123456789": 0x8F552B0C,
    b"1234": 0x9FC97B14,
    b"234": 0xE7C009CA,
    b"34": 0x873930DA,
    b"4": 0x5A4B5CA1,
    b"PreAmbleWillBeRemoved,ThePrePartThatIs": 0x78424F1C,
    b"reAmbleWillBeRemoved,ThePrePartThatIs": 0x4A62B377,
    b"eAmbleWillBeRemoved,ThePrePartThatIs": 0xE0E4E09E,
    b"AmbleWillBeRemoved,ThePrePartThatIs": 0x62B8B43F,
    b"": 0x106E08D9,
}


def signed32(n: int) -> int:
    """`n` read as a two's-complement 32-bit int, as Java sees it."""
    return n - (1 << 32) if n & 0x80000000 else n


@pytest.mark.parametrize(("key", "expected"), KAFKA_MURMUR2.items(), ids=repr)
def test_murmur2_matches_kafka(key: bytes, expected: int) -> None:
    h = murmur2(key)
    assert 0 <= h < 1 << 32
    assert signed32(h) == expected


@pytest.mark.parametrize("key", KAFKA_MURMUR2)
@pytest.mark.parametrize("partitions", [1, 2, 3, 7, 12, 100])
def test_partition_for_key_is_positive_hash_modulo(key: bytes, partitions: int) -> None:
    expected = (KAFKA_MURMUR2[key] & 0x7FFFFFFF) % partitions
    assert partition_for_key(key, partitions) == expected
    assert KeyPartitioner()(key, partitions) == expected


def test_key_partitioner_cache_does_not_change_answers() -> None:
    partitioner = KeyPartitioner(limit=4)
    keys = [b"key-%d" % i for i in range(20)]
    first = [partitioner(k, 7) for k in keys]
    assert [partitioner(k, 7) for k in keys] == first
    assert first == [partition_for_key(k, 7) for k in keys]
    assert [partitioner(k, 5) for k in keys] == [partition_for_key(k, 5) for k in keys]


@pytest.mark.parametrize(("key", "expected"), LIBRDKAFKA_MURMUR2.items(), ids=repr)
def test_murmur2_matches_librdkafka(key: bytes, expected: int) -> None:
    assert murmur2(key) == expected


def test_sticky_stays_until_sealed_then_moves() -> None:
    sticky = StickyPartitioner()
    p = sticky.partition("t", 8)
    assert all(sticky.partition("t", 8) == p for _ in range(100))
    for _ in range(50):
        sticky.next("t", 8, p)
        q = sticky.partition("t", 8)
        assert q != p
        assert 0 <= q < 8
        p = q


def test_sticky_ignores_a_stale_seal() -> None:
    sticky = StickyPartitioner()
    p = sticky.partition("t", 4)
    sticky.next("t", 4, (p + 1) % 4)
    assert sticky.partition("t", 4) == p


def test_sticky_with_one_partition() -> None:
    sticky = StickyPartitioner()
    assert sticky.partition("t", 1) == 0
    sticky.next("t", 1, 0)
    assert sticky.partition("t", 1) == 0


def test_sticky_follows_fewer_partitions() -> None:
    sticky = StickyPartitioner()
    for _ in range(20):
        sticky.partition("t", 100)
        assert 0 <= sticky.partition("t", 2) < 2
