"""Retention and compaction over a LogStore: whole batches deleted, compacted logs rewritten."""

from __future__ import annotations

from collections.abc import Iterator

from tidings.core import batch as codec
from tidings.core.records import Record, TopicSpec
from tidings.engines.log.store import BatchMeta, LogStore, StoredBatch


def apply_retention(store: LogStore, spec: TopicSpec, now_ms: int) -> None:
    """Delete whole batches older than retention_ms once rolled, or beyond retention_bytes."""
    config = spec.config
    if not config.delete or (config.retention_ms is None and config.retention_bytes is None):
        return
    for partition in range(spec.partitions):
        index = store.batch_index(spec.name, partition)
        cut = None
        if config.retention_ms is not None:
            horizon = now_ms - config.retention_ms
            cut = _expired(index, horizon, now_ms - config.segment_ms, config.segment_bytes)
        if config.retention_bytes is not None:
            total = sum(meta.size for meta in index)
            for meta in index:
                if total <= config.retention_bytes:
                    break
                total -= meta.size
                cut = max(cut or 0, meta.last_offset + 1)
        if cut is not None:
            store.truncate_before(spec.name, partition, cut)


def _expired(index: list[BatchMeta], horizon: int, rolled: int, segment_bytes: int) -> int | None:
    """The offset before which time retention deletes, or None to keep everything.

    A batch expires when all its records are older than `horizon` and its segment would
    have rolled in Kafka: it was appended by `rolled`, or segment_bytes came after it.
    """
    after = sum(meta.size for meta in index)
    cut = None
    for meta in index:
        after -= meta.size
        if meta.max_timestamp >= horizon:
            break
        if meta.appended_ms > rolled and after < segment_bytes:
            break
        cut = meta.last_offset + 1
    return cut


PAGE_BYTES = 4 << 20
"""How much of a partition compaction reads at a time: its memory is this plus the key map."""


def compact(store: LogStore, spec: TopicSpec, now_ms: int) -> None:
    """Keep the latest record per key; drop tombstones older than delete_retention_ms."""
    config = spec.config
    if not config.compact:
        return
    lag_horizon = now_ms - config.min_compaction_lag_ms
    tombstone_horizon = now_ms - config.delete_retention_ms
    for state in store.partition_states(spec.name):
        # Records appended from here on are left for the next run: they were not in the
        # key map, and a partition written without pause would never be finished.
        start, end = state.start_offset, state.end_offset
        latest: dict[bytes, int] = {}
        for page in _pages(store, spec.name, state.partition, start, end):
            for stored in page:
                for r in codec.decode(spec.name, state.partition, stored.base_offset, stored.data):
                    if r.key is not None:
                        latest[r.key] = r.offset
        for page in _pages(store, spec.name, state.partition, start, end):
            replaced: list[int] = []
            rewritten: list[tuple[int, codec.EncodedBatch]] = []
            for stored in page:
                if codec.info(stored.data).max_timestamp > lag_horizon:
                    continue
                records = codec.decode(spec.name, state.partition, stored.base_offset, stored.data)
                kept = [r for r in records if _keep(r, latest, tombstone_horizon)]
                if len(kept) == len(records):
                    continue
                replaced.append(stored.base_offset)
                if kept:
                    rewritten.append((stored.base_offset, _encode(kept, stored.base_offset)))
            if replaced:
                # each batch is rewritten on its own, at its own base offset; the store
                # skips any that retention deleted since this page was read
                store.replace_batches(spec.name, state.partition, replaced, rewritten)


def _pages(
    store: LogStore, topic: str, partition: int, start: int, end: int
) -> Iterator[list[StoredBatch]]:
    """The batches of a partition that begin before `end`, read PAGE_BYTES at a time."""
    offset = start
    while offset < end:
        page = [b for b in store.read(topic, partition, offset, PAGE_BYTES) if b.base_offset < end]
        if not page:
            return
        yield page
        last = page[-1]
        offset = last.base_offset + codec.info(last.data).last_delta + 1


def _keep(record: Record, latest: dict[bytes, int], tombstone_horizon: int) -> bool:
    """Whether compaction keeps `record`: unkeyed, or its key's latest and not an old tombstone."""
    if record.key is None:
        return True
    if latest.get(record.key, record.offset) != record.offset:
        return False
    return record.value is not None or record.timestamp >= tombstone_horizon


def _encode(records: list[Record], base_offset: int) -> codec.EncodedBatch:
    """`records` as one batch at `base_offset`, each at its own offset delta."""
    return codec.encode(
        [r.value for r in records],
        [r.key for r in records],
        [r.timestamp for r in records],
        [r.headers for r in records],
        [r.offset - base_offset for r in records],
    )
