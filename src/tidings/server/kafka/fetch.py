"""Fetch: stored batches served as they are, long polling, and incremental fetch sessions.

A Kafka batch is served as the producer sent it, its base offset filled in; a batch the
Python API wrote is rewritten as a Kafka batch on the way out. A fetch waits up to
max_wait for min_bytes, woken by the commit of new records rather than by a timer.

A fetch near the end of the log, the common case of a consumer keeping up, is answered
from the batches this process appended last (the engine's tails) without a trip to the
store: every fetch woken by a commit then costs no query.

Fetch sessions (KIP-227) let a consumer name only the partitions whose position changed:
the broker keeps the rest from the session, and answers with only the partitions that
have records or news (a new high watermark or log start, an error).
"""

from __future__ import annotations

import itertools
import time
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Any

from kio.schema.errors import ErrorCode

from tidings.core import batch as codec
from tidings.core import kafka_batch
from tidings.core.errors import TopicNotFoundError
from tidings.core.records import TopicPartition
from tidings.engines.base import PartitionState
from tidings.engines.log.served import PartitionRead, ServedLog, StoredBatch, Tail
from tidings.server.acls import Operation, ResourceType
from tidings.server.kafka.acl_apis import TOPIC_DENIED, Allows

Fields = dict[str, Any]
TOPIC = ResourceType.TOPIC
Where = tuple[str, int]

MAX_SESSIONS = 1000
"""Fetch sessions kept; the least recently used goes first (its consumer starts anew)."""
INITIAL_EPOCH, FINAL_EPOCH = 0, -1


@dataclass
class _Wanted:
    """One partition of a fetch: where to read and what the client last heard."""

    offset: int
    max_bytes: int
    high_watermark: int = -1
    log_start: int = -1


@dataclass
class FetchSession:
    """The partitions a consumer fetches, kept between its requests."""

    id: int
    partitions: dict[Where, _Wanted]
    epoch: int = 1
    """The epoch its next request must carry."""
    used: float = field(default_factory=time.monotonic)


class FetchApi:
    """The Fetch request, with the fetch sessions of every connection."""

    def __init__(self, engine: ServedLog, allows: Allows) -> None:
        self.engine = engine
        self._allows = allows
        self._sessions: OrderedDict[int, FetchSession] = OrderedDict()
        self._ids = itertools.count(1)
        self._released = False
        self._starts: dict[Where, tuple[Tail, int]] = {}
        """Each partition's log start as last read from the store, with the tail that was
        current then: retention clears the tails, so the start holds while that tail does."""

    async def fetch(self, request: Any, version: int) -> Fields:
        """Records from each position; waits up to max_wait for min_bytes."""
        denied: dict[Where, Fields] = {}
        asked: dict[Where, _Wanted] = {}
        for t in request.topics:
            readable = self._allows(Operation.READ, TOPIC, t.topic)
            for p in t.partitions:
                if readable:
                    asked[(t.topic, p.partition)] = _Wanted(p.fetch_offset, p.partition_max_bytes)
                else:  # answered with the error, and never kept in a session
                    denied[(t.topic, p.partition)] = _denied(p.partition)
        session_id = getattr(request, "session_id", 0)
        epoch = getattr(request, "session_epoch", FINAL_EPOCH)
        session: FetchSession | None = None
        incremental = False
        if session_id == 0 and epoch == INITIAL_EPOCH:
            session = self._open(asked)
        elif session_id != 0 and epoch == FINAL_EPOCH:
            self._sessions.pop(session_id, None)
        elif session_id != 0:
            found = self._sessions.get(session_id)
            if found is None:
                return _session_error(ErrorCode.fetch_session_id_not_found)
            if epoch != found.epoch:
                return _session_error(ErrorCode.invalid_fetch_session_epoch)
            session, incremental = found, True
            self._update(session, asked, request.forgotten_topics_data)
        wanted = session.partitions if session is not None else asked
        if incremental:  # an ACL removed since the session began applies to it too
            for where in [w for w in wanted if not self._allows(Operation.READ, TOPIC, w[0])]:
                del wanted[where]
                denied[where] = _denied(where[1])
        deadline = time.monotonic() + request.max_wait.total_seconds()
        while True:
            seen = self.engine.version
            answer = self._from_tails(wanted, request.max_bytes)
            results, size = answer or await self._read_all(wanted, request.max_bytes)
            if incremental:
                results = {w: r for w, r in results.items() if _news(wanted[w], r)}
            remaining = deadline - time.monotonic()
            if size >= request.min_bytes or remaining <= 0 or (incremental and results):
                break
            if self._released:
                break
            await self.engine.wait_for_data(seen, remaining, wanted)
        for where, result in results.items():
            wanted[where].high_watermark = result.get("high_watermark", -1)
            wanted[where].log_start = result.get("log_start_offset", -1)
        return {
            "session_id": session.id if session else 0,
            "responses": _by_topic(results | denied),
        }

    def release(self) -> None:
        """Answer every waiting fetch now with what it has, and every later one at once."""
        self._released = True
        self.engine.wake_waiters()

    def _open(self, partitions: dict[Where, _Wanted]) -> FetchSession:
        while len(self._sessions) >= MAX_SESSIONS:
            self._sessions.popitem(last=False)
        session = FetchSession(next(self._ids), dict(partitions))
        self._sessions[session.id] = session
        return session

    def _update(self, session: FetchSession, asked: dict[Where, _Wanted], forgotten: Any) -> None:
        session.epoch = session.epoch + 1 if session.epoch < 0x7FFFFFFF else 1
        session.used = time.monotonic()
        self._sessions.move_to_end(session.id)
        for topic in forgotten:
            for p in topic.partitions:
                session.partitions.pop((topic.topic, p), None)
        for where, change in asked.items():
            known = session.partitions.get(where)
            if known is None:
                session.partitions[where] = change
            else:
                known.offset, known.max_bytes = change.offset, change.max_bytes

    def _from_tails(
        self, wanted: dict[Where, _Wanted], limit: int
    ) -> tuple[dict[Where, Fields], int] | None:
        """Each partition's answer from the engine's tails, and the total bytes of records;
        None when a partition's position or log start is not there (read the store)."""
        tails = self.engine.tails
        total = 0
        out: dict[Where, Fields] = {}
        for where, w in wanted.items():
            tail = tails.get(TopicPartition(*where))
            known = self._starts.get(where)
            if tail is None or known is None or known[0] is not tail:
                return None
            batches = tail.batches_from(w.offset)
            if batches is None:
                return None
            result: Fields = {
                "partition_index": where[1],
                "records": b"",
                "high_watermark": tail.end_offset,
                "last_stable_offset": tail.end_offset,
                "log_start_offset": known[1],
            }
            if batches and (total < limit or total == 0):
                stored = _fit(
                    [StoredBatch(b.base_offset, b.data) for b in batches],
                    min(w.max_bytes, max(limit - total, 1)),
                )
                result["records"] = _as_kafka(*where, stored)
                total += len(result["records"])
            out[where] = result
        return out, total

    async def _read_all(
        self, wanted: dict[Where, _Wanted], limit: int
    ) -> tuple[dict[Where, Fields], int]:
        """Each partition's answer, read in one trip to the store; total bytes of records."""
        tails = {where: self.engine.tails.get(TopicPartition(*where)) for where in wanted}
        total = 0
        out: dict[Where, Fields] = {}
        reads = [PartitionRead(t, p, w.offset, w.max_bytes) for (t, p), w in wanted.items()]
        found = await self.engine.read_partitions(reads, limit)
        for (topic, partition), (state, stored) in zip(wanted, found, strict=True):
            result: Fields = {"partition_index": partition, "records": b""}  # never null
            out[(topic, partition)] = result
            if state is None:
                self._starts.pop((topic, partition), None)
                result["error_code"] = ErrorCode.unknown_topic_or_partition
                continue
            tail = tails[(topic, partition)]
            if tail is not None:  # taken before the read: a later retention replaces it
                self._starts[(topic, partition)] = (tail, state.start_offset)
            result |= {
                "high_watermark": state.end_offset,
                "last_stable_offset": state.end_offset,
                "log_start_offset": state.start_offset,
            }
            if stored is None:
                result["error_code"] = ErrorCode.offset_out_of_range
            elif stored:
                result["records"] = _as_kafka(topic, partition, stored)
                total += len(result["records"])
        return out, total


async def partition_states(engine: ServedLog, topic: str) -> dict[int, PartitionState] | None:
    """Each partition's extent by number; None when the topic does not exist."""
    try:
        _, states = await engine.describe_topic(topic)
    except TopicNotFoundError:
        return None
    return {s.partition: s for s in states}


def _as_kafka(topic: str, partition: int, stored: list[StoredBatch]) -> bytes:
    """Stored batches as the records of a fetch response, copied once."""
    parts: list[bytes | memoryview] = []
    for b in stored:
        if b.data.startswith(codec.MAGIC):  # written by the Python API
            records = codec.decode(topic, partition, b.base_offset, b.data)
            parts.append(kafka_batch.encode(records, b.base_offset))
        else:
            parts += kafka_batch.with_base_offset(b.data, b.base_offset)
    return b"".join(parts)


def _fit(batches: list[StoredBatch], max_bytes: int) -> list[StoredBatch]:
    """The first batches within max_bytes, at least one (as the store reads them)."""
    total = 0
    for i, b in enumerate(batches):
        total += len(b.data)
        if i and total > max_bytes:
            return batches[:i]
    return batches


def _news(wanted: _Wanted, result: Fields) -> bool:
    """Whether an incremental response must carry this partition."""
    return bool(
        result.get("records")
        or result.get("error_code")
        or result.get("high_watermark", -1) != wanted.high_watermark
        or result.get("log_start_offset", -1) != wanted.log_start
    )


def _by_topic(results: dict[Where, Fields]) -> list[Fields]:
    topics: dict[str, list[Fields]] = {}
    for (topic, _), result in results.items():
        topics.setdefault(topic, []).append(result)
    return [{"topic": t, "partitions": ps} for t, ps in topics.items()]


def _denied(partition: int) -> Fields:
    return {"partition_index": partition, "error_code": TOPIC_DENIED, "records": b""}


def _session_error(code: ErrorCode) -> Fields:
    return {"error_code": code, "session_id": 0, "responses": []}
