"""Retention and compaction over a LogStore: whole batches deleted, compacted logs rewritten."""

from __future__ import annotations

from tidings.core import batch as codec
from tidings.core.records import Record, TopicSpec
from tidings.engines.log.store import LogStore


def apply_retention(store: LogStore, spec: TopicSpec, now_ms: int) -> None:
    """Delete whole batches older than retention_ms, or beyond retention_bytes."""
    config = spec.config
    if not config.delete or (config.retention_ms is None and config.retention_bytes is None):
        return
    for partition in range(spec.partitions):
        index = store.batch_index(spec.name, partition)
        cut = None
        if config.retention_ms is not None:
            horizon = now_ms - config.retention_ms
            for meta in index:
                if meta.max_timestamp >= horizon:
                    break
                cut = meta.last_offset + 1
        if config.retention_bytes is not None:
            total = sum(meta.size for meta in index)
            for meta in index:
                if total <= config.retention_bytes:
                    break
                total -= meta.size
                cut = max(cut or 0, meta.last_offset + 1)
        if cut is not None:
            store.truncate_before(spec.name, partition, cut)


def compact(store: LogStore, spec: TopicSpec, now_ms: int) -> None:
    """Keep the latest record per key; drop tombstones older than delete_retention_ms."""
    config = spec.config
    if not config.compact:
        return
    lag_horizon = now_ms - config.min_compaction_lag_ms
    tombstone_horizon = now_ms - config.delete_retention_ms
    for partition in range(spec.partitions):
        batches = store.read(spec.name, partition, 0, 1 << 62)
        decoded = [codec.decode(spec.name, partition, b.base_offset, b.data) for b in batches]
        latest: dict[bytes, int] = {}
        for records in decoded:
            for r in records:
                if r.key is not None:
                    latest[r.key] = r.offset
        replaced: list[int] = []
        rewritten: list[tuple[int, codec.EncodedBatch]] = []
        for stored, records in zip(batches, decoded, strict=True):
            if codec.info(stored.data).max_timestamp > lag_horizon:
                continue
            kept = [r for r in records if _keep(r, latest, tombstone_horizon)]
            if len(kept) == len(records):
                continue
            replaced.append(stored.base_offset)
            if kept:
                rewritten.append((stored.base_offset, _encode(kept, stored.base_offset)))
        if replaced:
            store.replace_batches(spec.name, partition, replaced, rewritten)


def _keep(record: Record, latest: dict[bytes, int], tombstone_horizon: int) -> bool:
    if record.key is None:
        return True
    if latest[record.key] != record.offset:
        return False
    return record.value is not None or record.timestamp >= tombstone_horizon


def _encode(records: list[Record], base_offset: int) -> codec.EncodedBatch:
    return codec.encode(
        [r.value for r in records],
        [r.key for r in records],
        [r.timestamp for r in records],
        [r.headers for r in records],
        [r.offset - base_offset for r in records],
    )
