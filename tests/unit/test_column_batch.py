"""ColumnBatch: the producer's columns, encoded for engines that store bytes and read back."""

from __future__ import annotations

import asyncio

from tidings.core import batch as codec
from tidings.core.records import TopicSpec
from tidings.engines.base import AppendResult, ColumnBatch
from tidings.engines.log.engine import LogEngine
from tidings.engines.log.store import StoredBatch
from tidings.engines.memory import MemoryStore


def test_encoding_and_decoding_keep_every_field() -> None:
    columns = ColumnBatch(
        "orders",
        2,
        [b"a", None, b""],
        [None, b"k", b""],
        [10, 11, 12],
        [(), (("h", b"1"), ("n", None)), ()],
    )
    encoded = columns.encode()
    assert (encoded.topic, encoded.partition, encoded.batch.records) == ("orders", 2, 3)
    records = codec.decode("orders", 2, 0, encoded.batch.data)
    assert [(r.timestamp, r.key, r.value, r.headers) for r in records] == [
        (10, None, b"a", ()),
        (11, b"k", None, (("h", b"1"), ("n", None))),
        (12, b"", b"", ()),
    ]
    assert ColumnBatch.decode(encoded) == ColumnBatch(
        "orders",
        2,
        (b"a", None, b""),
        (None, b"k", b""),
        (10, 11, 12),
        ((), (("h", b"1"), ("n", None)), ()),
    )


def test_columns_no_record_has_decode_as_none() -> None:
    encoded = ColumnBatch("orders", 0, [b"a", b"b"], None, [5, 5], None).encode()
    decoded = ColumnBatch.decode(encoded)
    assert decoded.keys is None
    assert decoded.headers is None
    assert list(decoded.values) == [b"a", b"b"]
    assert list(decoded.timestamps) == [5, 5]


def test_an_engine_that_stores_bytes_stores_them_encoded() -> None:
    async def run() -> list[StoredBatch]:
        store = MemoryStore()
        engine = LogEngine(store)
        await engine.start()
        try:
            await engine.create_topic(TopicSpec("orders", 2))
            results = await engine.append_columns([columns])
            assert results == [AppendResult("orders", 1, 0)]
            return store.read("orders", 1, 0, 1 << 20)
        finally:
            await engine.close()

    columns = ColumnBatch("orders", 1, [b"v", b"w"], [b"k", None], [7, 8], None)
    (stored,) = asyncio.run(run())
    assert stored.data == columns.encode().batch.data
