"""Bounds that hold below every surface: partition counts of the embedded log, and how far
a Kafka batch may decompress."""

from __future__ import annotations

import zlib
from pathlib import Path

import pytest

import tidings
from tests.compressed import COMPRESS, batch_over, compressed_batch
from tidings import ConfigurationError, InvalidPartitionsError, Record
from tidings.core import kafka_batch


@pytest.mark.parametrize("url", ["memory://", "sqlite://{tmp}/bus.db"])
def test_partition_counts_are_bounded_with_an_error_naming_the_limit(
    url: str, tmp_path: Path
) -> None:
    with tidings.connect(url.format(tmp=tmp_path)) as bus:
        for partitions, says in [
            (10**20, "partitions must be an int from 1 to 2147483647"),
            (2**31 - 1, "max_partitions=10000"),
            (10_001, "max_partitions=10000"),
            ("3", "not '3'"),
            (2.0, "not 2.0"),
            (0, "not 0"),
        ]:
            with pytest.raises(ConfigurationError, match="partitions") as caught:
                bus.create_topic("t", partitions)  # type: ignore[arg-type]
            assert isinstance(caught.value, InvalidPartitionsError)
            assert says in str(caught.value)
        bus.create_topic("t", 2)
        with pytest.raises(InvalidPartitionsError, match="max_partitions=10000"):
            bus.add_partitions("t", 2**31 - 1)
        assert bus.describe_topic("t").spec.partitions == 2
        assert [t.name for t in bus.list_topics()] == ["t"]


def test_the_partition_limit_is_set_in_the_url(tmp_path: Path) -> None:
    with tidings.connect(f"sqlite://{tmp_path}/bus.db?max_partitions=3") as bus:
        bus.create_topic("three", 3)
        with pytest.raises(InvalidPartitionsError, match="max_partitions=3"):
            bus.create_topic("four", 4)
        with pytest.raises(InvalidPartitionsError, match="max_partitions=3"):
            bus.add_partitions("three", 4)
    with pytest.raises(ConfigurationError, match="max_partitions='lots'"):
        tidings.connect("memory://?max_partitions=lots")


@pytest.mark.parametrize("codec", sorted(COMPRESS))
def test_decompression_stops_at_the_limit(codec: int) -> None:
    bomb = compressed_batch(b"\0" * (64 << 20), codec)
    header = kafka_batch.read_header(bomb)
    with pytest.raises(kafka_batch.BatchTooLargeError, match="more than 1048576 bytes"):
        kafka_batch.records_section(header, bomb, 1 << 20)
    records = kafka_batch.decode("t", 0, 0, compressed_batch(b"v" * 1000, codec))
    assert [r.value for r in records] == [b"v" * 1000]


def test_a_gzip_stream_of_several_members_is_read_whole_and_bounded() -> None:
    section = kafka_batch.encode([Record("t", 0, 0, 0, None, b"v" * 1000)], 0)
    records = section[kafka_batch.HEADER.size :]
    half = len(records) // 2
    members = b"".join(_gzip(part) for part in (records[:half], records[half:]))
    batch = batch_over(members, 1)
    assert kafka_batch.decode("t", 0, 0, batch)[0].value == b"v" * 1000
    with pytest.raises(kafka_batch.BatchTooLargeError):
        kafka_batch.records_section(kafka_batch.read_header(batch), batch, half + 1)


def test_a_corrupt_compressed_batch_is_invalid_not_too_large() -> None:
    for codec in COMPRESS:
        batch = batch_over(b"not compressed at all", codec)
        with pytest.raises(kafka_batch.InvalidBatchError) as caught:
            kafka_batch.records_section(kafka_batch.read_header(batch), batch, 1 << 20)
        assert not isinstance(caught.value, kafka_batch.BatchTooLargeError), codec


def _gzip(data: bytes) -> bytes:
    stream = zlib.compressobj(wbits=zlib.MAX_WBITS | 16)
    return stream.compress(data) + stream.flush()
