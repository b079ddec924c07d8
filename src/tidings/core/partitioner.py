"""Kafka's default partitioning: murmur2 for keyed records, sticky batches for the rest."""

from __future__ import annotations

import random

_M = 0x5BD1E995
_MASK = 0xFFFFFFFF


def murmur2(data: bytes) -> int:
    """Kafka's murmur2 hash of `data` as an unsigned 32-bit int (seed 0x9747b28c)."""
    length = len(data)
    h = (0x9747B28C ^ length) & _MASK
    end = length & ~3
    for i in range(0, end, 4):
        k = int.from_bytes(data[i : i + 4], "little")
        k = (k * _M) & _MASK
        k ^= k >> 24
        k = (k * _M) & _MASK
        h = ((h * _M) & _MASK) ^ k
    extra = length & 3
    if extra == 3:
        h ^= data[end + 2] << 16
    if extra >= 2:
        h ^= data[end + 1] << 8
    if extra >= 1:
        h ^= data[end]
        h = (h * _M) & _MASK
    h ^= h >> 13
    h = (h * _M) & _MASK
    h ^= h >> 15
    return h


def partition_for_key(key: bytes, partitions: int) -> int:
    """The partition of `key`, exactly as Kafka's Java client and librdkafka's murmur2_random."""
    return (murmur2(key) & 0x7FFFFFFF) % partitions


class KeyPartitioner:
    """murmur2 partitioning with a bounded cache, since keys repeat in real traffic."""

    __slots__ = ("_cache", "_limit")

    def __init__(self, limit: int = 65_536) -> None:
        self._cache: dict[tuple[bytes, int], int] = {}
        self._limit = limit

    def __call__(self, key: bytes, partitions: int) -> int:
        """The partition of `key` among `partitions`."""
        cached = self._cache.get((key, partitions))
        if cached is not None:
            return cached
        if len(self._cache) >= self._limit:
            self._cache.clear()
        p = self._cache[(key, partitions)] = partition_for_key(key, partitions)
        return p


class StickyPartitioner:
    """Unkeyed records stick to one partition until its batch is sealed (KIP-480)."""

    __slots__ = ("_current",)

    def __init__(self) -> None:
        self._current: dict[str, int] = {}

    def partition(self, topic: str, partitions: int) -> int:
        """The partition unkeyed records of `topic` go to now."""
        p = self._current.get(topic)
        if p is None or p >= partitions:
            p = self._current[topic] = random.randrange(partitions)
        return p

    def next(self, topic: str, partitions: int, sealed: int) -> None:
        """Move on from `sealed` after its batch was sealed."""
        if self._current.get(topic) == sealed and partitions > 1:
            p = random.randrange(partitions - 1)
            self._current[topic] = p if p < sealed else p + 1
