"""ColumnBatch: the producer's columns, encoded by an engine that stores bytes."""

from __future__ import annotations

import asyncio

from tidings.core import batch as codec
from tidings.core.records import TopicSpec
from tidings.engines.base import AppendResult, ColumnBatch
from tidings.engines.log.engine import LogEngine
from tidings.engines.log.store import ProduceBatch, StoredBatch
from tidings.engines.memory import MemoryStore


def _fields(produce: ProduceBatch) -> list[tuple[int, bytes | None, bytes | None, object]]:
    records = codec.decode(produce.topic, produce.partition, 0, produce.batch.data)
    return [(r.timestamp, r.key, r.value, r.headers) for r in records]


def test_encoding_keeps_every_field() -> None:
    columns = ColumnBatch(
        "orders",
        2,
        [b"a", None, b""],
        [None, b"k", b""],
        [10, 11, 12],
        [(), (("h", b"1"), ("n", None)), ()],
    )
    encoded = ProduceBatch.encode(columns)
    assert (encoded.topic, encoded.partition, encoded.batch.records) == ("orders", 2, 3)
    assert _fields(encoded) == [
        (10, None, b"a", ()),
        (11, b"k", None, (("h", b"1"), ("n", None))),
        (12, b"", b"", ()),
    ]


def test_a_batch_of_one_keeps_every_field() -> None:
    keyed = ColumnBatch("orders", 0, [b"v"], [b"k"], [7], [(("h", b"1"),)])
    assert _fields(ProduceBatch.encode(keyed)) == [(7, b"k", b"v", (("h", b"1"),))]
    bare = ColumnBatch("orders", 0, [None], None, [8], None)
    assert _fields(ProduceBatch.encode(bare)) == [(8, None, None, ())]


def test_an_engine_that_stores_bytes_stores_them_encoded() -> None:
    async def run() -> list[StoredBatch]:
        store = MemoryStore()
        engine = LogEngine(store)
        await engine.start()
        try:
            await engine.create_topic(TopicSpec("orders", 2))
            results = await engine.append([columns])
            assert results == [AppendResult("orders", 1, 0)]
            return store.read("orders", 1, 0, 1 << 20)
        finally:
            await engine.close()

    columns = ColumnBatch("orders", 1, [b"v", b"w"], [b"k", None], [7, 8], None)
    (stored,) = asyncio.run(run())
    assert stored.data == ProduceBatch.encode(columns).batch.data
