"""Compressed Kafka record batches, built here, shared by the unit and server suites."""

from __future__ import annotations

import struct
from collections.abc import Callable

import cramjam
import crc32c

from tidings import Record
from tidings.core import kafka_batch

COMPRESS: dict[int, Callable[[bytes], cramjam.Buffer]] = {
    1: cramjam.gzip.compress,
    2: cramjam.snappy.compress_raw,
    3: cramjam.lz4.compress,
    4: cramjam.zstd.compress,
}
"""Each Kafka codec by its attribute bits (snappy raw, as librdkafka sends it)."""


def batch_over(packed: bytes, codec: int) -> bytes:
    """A one-record batch whose records section is `packed`, marked as `codec`."""
    plain = kafka_batch.encode([Record("t", 0, 0, 1_700_000_000_000, None, b"v")], 0)
    after_crc = bytearray(plain[kafka_batch.CRC_START : kafka_batch.HEADER.size] + packed)
    struct.pack_into(">h", after_crc, 0, codec)  # attributes: the codec
    length = len(after_crc) + kafka_batch.CRC_START - kafka_batch.LENGTH_END
    crc = crc32c.crc32c(bytes(after_crc))
    return struct.pack(">qiibI", 0, length, 0, kafka_batch.MAGIC, crc) + bytes(after_crc)


def compressed_batch(value: bytes, codec: int) -> bytes:
    """A batch of one record holding `value`, its records compressed with `codec`."""
    plain = kafka_batch.encode([Record("t", 0, 0, 1_700_000_000_000, None, value)], 0)
    return batch_over(bytes(COMPRESS[codec](plain[kafka_batch.HEADER.size :])), codec)
