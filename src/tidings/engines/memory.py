"""The memory engine: the short reference LogStore, for tests and ephemeral use."""

from __future__ import annotations

import bisect
import threading
from collections.abc import Callable, Sequence
from concurrent.futures import Future
from dataclasses import dataclass, field

from tidings.core.batch import EncodedBatch
from tidings.core.errors import PartitionNotFoundError, TopicExistsError, TopicNotFoundError
from tidings.core.records import TopicSpec, now_ms
from tidings.engines.base import AppendResult, PartitionState
from tidings.engines.groups.coordinator import GroupState
from tidings.engines.log.share import ShareState
from tidings.engines.log.store import (
    Appended,
    BatchMeta,
    LogStore,
    ProduceBatch,
    StoredBatch,
    T,
)


@dataclass
class _Partition:
    start: int = 0
    end: int = 0
    size: int = 0
    lasts: list[int] = field(default_factory=list)
    """last offset of each batch, ascending: the read index."""
    batches: list[tuple[BatchMeta, bytes]] = field(default_factory=list)


class MemoryStore(LogStore):
    """Everything in dicts under one lock; gone when the process ends."""

    durable = False
    multi_process = False
    reads_block = False

    def __init__(self, url: str = "memory://") -> None:
        self.url = url
        self._lock = threading.RLock()
        self._specs: dict[str, TopicSpec] = {}
        self._logs: dict[str, list[_Partition]] = {}
        self._groups: dict[str, str] = {}
        self._shares: dict[tuple[str, str, int], str] = {}
        self._listeners: list[Callable[[Sequence[Appended]], None]] = []

    def open(self) -> None:
        """Nothing to open."""

    def close(self) -> None:
        """Nothing to release."""

    def topics(self) -> dict[str, TopicSpec]:
        """Every topic."""
        with self._lock:
            return dict(self._specs)

    def create_topic(self, spec: TopicSpec) -> None:
        """Create a topic."""
        with self._lock:
            if spec.name in self._specs:
                raise TopicExistsError(spec.name)
            self._specs[spec.name] = spec
            self._logs[spec.name] = [_Partition() for _ in range(spec.partitions)]

    def delete_topic(self, name: str) -> None:
        """Delete a topic."""
        with self._lock:
            self._log(name)
            del self._specs[name], self._logs[name]
            for key in [k for k in self._shares if k[1] == name]:
                del self._shares[key]

    def update_topic(self, spec: TopicSpec) -> None:
        """Store new settings or partitions."""
        with self._lock:
            log = self._log(spec.name)
            log.extend(_Partition() for _ in range(spec.partitions - len(log)))
            self._specs[spec.name] = spec

    def submit(self, batches: Sequence[ProduceBatch]) -> Future[list[AppendResult]]:
        """Append at once."""
        future: Future[list[AppendResult]] = Future()
        try:
            future.set_result(self.append(batches))
        except Exception as e:
            future.set_exception(e)
        return future

    def append(self, batches: Sequence[ProduceBatch]) -> list[AppendResult]:
        """Append at once, then tell the listeners what was appended."""
        results = []
        appended = []
        now = now_ms()
        with self._lock:
            for topic, partition, batch in batches:
                part = self._partition(topic, partition)
                base = part.end
                meta = BatchMeta(
                    base, base + batch.last_delta, batch.max_timestamp, len(batch.data), now
                )
                part.batches.append((meta, batch.data))
                part.lasts.append(meta.last_offset)
                part.end = base + batch.records
                part.size += meta.size
                results.append(AppendResult(topic, partition, base))
                appended.append(Appended(topic, partition, base, batch.data, part.end))
        for listener in self._listeners:
            listener(appended)
        return results

    def read(self, topic: str, partition: int, offset: int, max_bytes: int) -> list[StoredBatch]:
        """Batches from `offset`."""
        with self._lock:
            part = self._partition(topic, partition)
            i = bisect.bisect_left(part.lasts, offset)
            out: list[StoredBatch] = []
            size = 0
            for meta, data in part.batches[i:]:
                if out and size + meta.size > max_bytes:
                    break
                out.append(StoredBatch(meta.base_offset, data))
                size += meta.size
            return out

    def partition_states(self, topic: str) -> list[PartitionState]:
        """Extents of the partitions."""
        with self._lock:
            return [
                PartitionState(i, p.start, p.end, p.size) for i, p in enumerate(self._log(topic))
            ]

    def first_batch_at(self, topic: str, partition: int, timestamp: int) -> StoredBatch | None:
        """First batch reaching `timestamp`."""
        with self._lock:
            for meta, data in self._partition(topic, partition).batches:
                if meta.max_timestamp >= timestamp:
                    return StoredBatch(meta.base_offset, data)
            return None

    def batch_index(self, topic: str, partition: int) -> list[BatchMeta]:
        """The batches of a partition."""
        with self._lock:
            return [meta for meta, _ in self._partition(topic, partition).batches]

    def truncate_before(self, topic: str, partition: int, offset: int) -> None:
        """Drop whole batches before `offset`."""
        with self._lock:
            part = self._partition(topic, partition)
            i = bisect.bisect_left(part.lasts, offset)
            part.size -= sum(meta.size for meta, _ in part.batches[:i])
            del part.batches[:i], part.lasts[:i]
            part.start = max(part.start, offset)

    def replace_batches(
        self,
        topic: str,
        partition: int,
        replaced: Sequence[int],
        batches: Sequence[tuple[int, EncodedBatch]],
    ) -> None:
        """Rewrite compacted batches, only those still stored and not below the log start."""
        with self._lock:
            part = self._partition(topic, partition)
            gone = set(replaced)
            kept = [(m, d) for m, d in part.batches if m.base_offset not in gone]
            present = {m.base_offset: m for m, _ in part.batches if m.base_offset in gone}
            for base, batch in batches:
                last = base + batch.last_delta
                if base in present and last >= part.start:
                    appended_ms = present[base].appended_ms
                    meta = BatchMeta(base, last, batch.max_timestamp, len(batch.data), appended_ms)
                    kept.append((meta, batch.data))
            kept.sort(key=lambda item: item[0].base_offset)
            part.batches = kept
            part.lasts = [m.last_offset for m, _ in kept]
            part.size = sum(m.size for m, _ in kept)

    def update_group(self, group: str, change: Callable[[GroupState], T], durable: bool) -> T:
        """Change a group's state under the lock."""
        with self._lock:
            raw = self._groups.get(group)
            state = GroupState.from_json(raw) if raw else GroupState()
            result = change(state)
            if state.forgotten:
                self._groups.pop(group, None)
            else:
                self._groups[group] = state.to_json()
            return result

    def read_group(self, group: str) -> GroupState | None:
        """A group's state."""
        with self._lock:
            raw = self._groups.get(group)
            return GroupState.from_json(raw) if raw else None

    def groups(self) -> list[str]:
        """Every group."""
        with self._lock:
            return sorted(self._groups)

    def update_share(
        self, group: str, topic: str, partition: int, change: Callable[[ShareState], T]
    ) -> T:
        """Change a share window under the lock."""
        with self._lock:
            raw = self._shares.get((group, topic, partition))
            state = ShareState.from_json(raw) if raw else ShareState()
            result = change(state)
            self._shares[(group, topic, partition)] = state.to_json()
            return result

    def read_shares(self, group: str) -> dict[tuple[str, int], ShareState]:
        """A share group's windows."""
        with self._lock:
            return {
                (t, p): ShareState.from_json(raw)
                for (g, t, p), raw in self._shares.items()
                if g == group
            }

    def share_groups(self) -> list[str]:
        """Every share group."""
        with self._lock:
            return sorted({g for g, _, _ in self._shares})

    def delete_share_group(self, group: str) -> None:
        """Forget a share group."""
        with self._lock:
            for key in [k for k in self._shares if k[0] == group]:
                del self._shares[key]

    def add_listener(self, callback: Callable[[Sequence[Appended]], None]) -> None:
        """Called after each append."""
        self._listeners.append(callback)

    def _log(self, topic: str) -> list[_Partition]:
        try:
            return self._logs[topic]
        except KeyError:
            raise TopicNotFoundError(topic) from None

    def _partition(self, topic: str, partition: int) -> _Partition:
        log = self._log(topic)
        if not 0 <= partition < len(log):
            raise PartitionNotFoundError(topic, partition, len(log))
        return log[partition]
