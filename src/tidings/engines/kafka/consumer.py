"""KafkaConsumer: a librdkafka consumer behind the EngineConsumer interface.

Every call into librdkafka runs off the event loop, one at a time (under the consumer's
lock): on the consumer's own thread, or for a sync poll on the caller's thread, which
waits anyway. librdkafka's rebalance callbacks run where it expects them: inside poll.
Positions are tidings': the next offset per partition after the records handed out, set
explicitly when a partition is assigned and moved by seek and rewind.

Two threads write a consumer's state: the event loop's (seek, pause, resume, and the
records a poll hands out) and the thread polling librdkafka (joins, assignments and the
rebalance callbacks inside its poll). What both write (positions, seek epochs, pauses,
records held, rebalances) changes only under the consumer's state lock, held for a few
dict operations and never across a call into librdkafka; the rest is the polling
thread's own.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
import time
import uuid
from collections import deque
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from functools import partial
from itertools import compress, pairwise, repeat
from operator import itemgetter, ne
from typing import TYPE_CHECKING, Any, TypeVar

from confluent_kafka import OFFSET_INVALID, Consumer, KafkaError, KafkaException, Message
from confluent_kafka import TopicPartition as KafkaPartition

from tidings.core.compiled import compiled
from tidings.core.errors import (
    ClosedError,
    CommitFailedError,
    GroupError,
    OffsetOutOfRangeError,
    PartitionNotFoundError,
    TidingsError,
    TopicNotFoundError,
)
from tidings.core.records import NO_HEADERS, Headers, Record, TopicPartition, records_from
from tidings.core.subjects import matching, split_subscription
from tidings.engines.base import BlockingEngineConsumer, ConsumerConfig, Rebalance
from tidings.engines.kafka.errors import kafka_error, translate
from tidings.engines.positions import PositionedConsumer

if TYPE_CHECKING:
    from tidings.engines.kafka.engine import KafkaEngine

R = TypeVar("R")
_MILLIS = itemgetter(1)
"""The milliseconds of a (type, milliseconds) timestamp of librdkafka's."""
log = logging.getLogger("tidings.kafka")

METADATA_MAX_AGE_S = 1.0
"""How often a pattern subscription looks for new matching topics."""
POLL_SLICE_S = 0.2
"""Longest single wait inside librdkafka, so a poll notices topics and closes promptly."""
SETTLE_S = 0.3
"""Least time the first poll after a seek or an assignment waits for records."""
FETCH_QUEUE_BACKOFF_MS = 10
"""librdkafka's pause before fetching more once enough is fetched ahead (its default 1 s)."""
FETCHED_WAIT_S = 0.002
"""How long a poll that has records waits for more of the same fetch to be queued."""
DRAIN_CHUNK = 100
"""Messages taken from librdkafka at a time. confluent-kafka's messages are tracked by the
cyclic collector; those alive when a young collection runs are promoted, and promotions
bring full collections nearer. At 500, a million-record read ran 13 full collections
(about 200 ms); at 100, 2 (50 ms)."""
OUT_OF_GROUP = {
    KafkaError.UNKNOWN_MEMBER_ID,
    KafkaError.ILLEGAL_GENERATION,
    KafkaError.REBALANCE_IN_PROGRESS,
    KafkaError.FENCED_INSTANCE_ID,
    KafkaError._STATE,
    KafkaError._MAX_POLL_EXCEEDED,
    KafkaError._ASSIGNMENT_LOST,
}
RESETS = {"earliest": "earliest", "latest": "latest", "none": "error"}

Runs = dict[TopicPartition, list[Record]]
"""Records by partition, each partition's in offset order."""


def _tp(p: KafkaPartition) -> TopicPartition:
    return TopicPartition(p.topic, p.partition)


def _or_invalid(offset: int | None) -> int:
    """An offset for librdkafka: None (no start known) is OFFSET_INVALID, the group's."""
    return OFFSET_INVALID if offset is None else offset


def _made_in_python(
    messages: list[Message],
    message_type: type[Message],
    record: type[Record],
    no_headers: Headers,
) -> tuple[list[Record], list[int]]:
    """Records of error-free `messages`, and the index where each partition's run starts.

    What the compiled `_records.made` does, where it was not built. Each field is read
    for all messages at once by map (the methods of `message_type`), and the records are
    made from the zipped fields by records_from: no Python code runs per message unless
    they carry headers.
    """
    if not messages:
        return [], []
    topics = list(map(message_type.topic, messages))
    partitions = list(map(message_type.partition, messages))
    listed = list(map(message_type.headers, messages))
    headers: Iterable[object] = repeat(no_headers)
    if any(listed):
        headers = [tuple(h) if h else no_headers for h in listed]
    records = records_from(
        zip(
            topics,
            partitions,
            map(message_type.offset, messages),
            map(_MILLIS, map(message_type.timestamp, messages)),
            map(message_type.key, messages),
            map(message_type.value, messages),
            headers,
            strict=False,  # repeat(no_headers) stands for headers no record has
        ),
        record,
    )
    n = len(records)
    if topics.count(topics[0]) == n and partitions.count(partitions[0]) == n:
        return records, [0]  # all of one partition, as most polls are
    where = list(zip(topics, partitions, strict=True))
    return records, [0, *compress(range(1, n), map(ne, where[1:], where[:-1]))]


_records = compiled("tidings.engines.kafka._records")
_made = _made_in_python if _records is None else _records.made


def _where(msg: Message) -> TopicPartition:
    """The partition a message of librdkafka's came from."""
    topic, partition = msg.topic(), msg.partition()
    assert topic is not None and partition is not None
    return TopicPartition(topic, partition)


class KafkaConsumer(PositionedConsumer, BlockingEngineConsumer):
    """One librdkafka consumer: in a group (subscribe), or on chosen partitions (assign)."""

    def __init__(self, engine: KafkaEngine, config: ConsumerConfig) -> None:
        self._engine = engine
        self._url = engine.url
        self._config = config
        self._group = config.group
        self._thread = ThreadPoolExecutor(1, thread_name_prefix="tidings-kafka-consumer")
        self._busy = threading.Lock()
        """Held by every call into librdkafka: one at a time, whichever thread makes it."""
        self._state = threading.Lock()
        """Held while the positions, epochs, pauses, held records or rebalances change (or
        are read to be changed): the loop and the polling thread both write them."""
        self._client: Consumer | None = None
        self._positions: dict[TopicPartition, int | None] = {}
        self._paused: set[TopicPartition] = set()
        self._epochs: dict[TopicPartition, int] = {}
        """Grows with every seek of a partition: records fetched before it are dropped."""
        self._ops: deque[Callable[[Consumer], None]] = deque()
        """librdkafka calls asked for on the loop, made on the consumer thread."""
        self._rebalances: list[Rebalance] = []
        self._held: list[Record] = []
        """Records fetched while joining, handed out by the next poll."""
        self._failure: TidingsError | None = None
        self._settled = True
        """False after an assignment or a seek, until a poll has waited for its fetch."""
        self._literal: list[str] = []
        self._patterns: list[str] = []
        self._topics: list[str] = []
        self._next_refresh = 0.0
        self._cooperative = config.strategy == "cooperative-sticky"
        self._joined = False
        self._closing = False
        self._closed = False

    # -- the consumer thread -------------------------------------------------------------

    async def _call(self, fn: Callable[..., R], *args: Any) -> R:
        if self._closed:
            raise ClosedError("consumer is closed")
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._thread, partial(self._locked, fn, *args))

    def _locked(self, fn: Callable[..., R], *args: Any) -> R:
        with self._busy:
            return fn(*args)

    def _consumer(self) -> Consumer:
        """Thread: the librdkafka consumer, created on first use."""
        if self._client is None:
            config = self._config
            session = int(
                self._engine.settings.librdkafka.get(
                    "session.timeout.ms", config.session_timeout_ms
                )
            )
            defaults: dict[str, object] = {
                "client.id": config.client_id,
                "auto.offset.reset": RESETS[config.auto_offset_reset],
                "partition.assignment.strategy": config.strategy,
                "session.timeout.ms": config.session_timeout_ms,
                "heartbeat.interval.ms": config.heartbeat_interval_ms,
                "max.partition.fetch.bytes": config.max_partition_fetch_bytes,
                "fetch.max.bytes": config.fetch_max_bytes,
                # a seek or a new record waits at most this long for a fetch in flight
                "fetch.wait.max.ms": 50,
                "fetch.error.backoff.ms": 100,
                # Past queued.min.messages fetched ahead, librdkafka postpones the next
                # fetch by this much (1 s by default): a reader faster than that would sit
                # idle for most of each second while draining a backlog.
                "fetch.queue.backoff.ms": FETCH_QUEUE_BACKOFF_MS,
                **config.extra,
            }
            overrides: dict[str, object] = {
                "group.id": self._group or f"tidings-reader-{uuid.uuid4().hex[:12]}",
                # librdkafka requires it to be at least the session timeout
                "max.poll.interval.ms": max(config.max_poll_interval_ms, session),
                "enable.auto.commit": False,
                "enable.auto.offset.store": False,
                "enable.partition.eof": False,
                "error_cb": self._on_error,
            }
            try:
                self._client = Consumer(
                    self._engine.settings.client("consumer", defaults, overrides)
                )
            except KafkaException as e:
                raise translate(e, self._url, "creating a consumer") from e
        return self._client

    def _on_error(self, err: KafkaError) -> None:
        log.warning("consumer of %s: %s", self._url, err.str())

    def _run_ops(self, client: Consumer) -> None:
        while self._ops:
            self._ops.popleft()(client)

    # -- membership ----------------------------------------------------------------------

    async def subscribe(self, topics: Sequence[str]) -> None:
        """Follow `topics` (names or patterns): in the group, or alone from their end."""
        self._patterns, self._literal = split_subscription(topics)
        await self._call(self._subscribe_blocking)

    def _subscribe_blocking(self) -> None:
        client = self._consumer()
        counts = self._engine.admin.partition_counts()
        for topic in self._literal:
            if topic not in counts:
                raise TopicNotFoundError(topic)
        self._topics = self._matching(counts)
        self._next_refresh = time.monotonic() + METADATA_MAX_AGE_S
        if self._group is None:
            self._follow(client, counts, initial=True)
            return
        self._subscribe_to(client, self._topics)
        self._join(client)

    def _matching(self, counts: dict[str, int]) -> list[str]:
        return list(dict.fromkeys([*self._literal, *matching(self._patterns, counts)]))

    def _subscribe_to(self, client: Consumer, topics: list[str]) -> None:
        if not topics:
            client.unsubscribe()
            return
        client.subscribe(
            topics, on_assign=self._on_assign, on_revoke=self._on_revoke, on_lost=self._on_lost
        )

    def _join(self, client: Consumer) -> None:
        """Thread: wait until the group assigns this member, unless others must move first.

        A member alone is assigned at once; when the group has other members, they give
        up partitions only inside their own polls, so this one does not wait for them.
        """
        deadline = time.monotonic() + self._config.session_timeout_ms / 1000 + 5
        others_checked = False
        while not self._joined and time.monotonic() < deadline:
            self._keep(client.poll(0.05))
            if not others_checked and client.memberid():
                others_checked = True
                assert self._group is not None
                described = self._engine.admin.client.describe_consumer_groups([self._group])
                with contextlib.suppress(Exception):
                    found = next(iter(described.values())).result(self._engine.settings.timeout_s)
                    if any(m.member_id != client.memberid() for m in found.members):
                        return

    def _keep(self, msg: Message | None) -> None:
        """Thread: hold a record fetched while joining; raise a group error."""
        if msg is None:
            return
        err = msg.error()
        if err is None:
            runs = self._records([msg], {})
            with self._state:
                for run in runs.values():
                    self._held.extend(run)
            return
        try:
            self._raise_for(err, msg)
        except GroupError:
            raise
        except TidingsError as e:  # about reading, not joining: the next poll raises it
            self._failure = e

    def _follow(self, client: Consumer, counts: dict[str, int], initial: bool) -> None:
        """Thread, without a group: read every partition of the matching topics.

        Partitions there at the start are read from their end; those of topics created
        later, from their beginning, so nothing published after subscribing is missed.
        """
        wanted = {TopicPartition(t, p) for t in self._topics for p in range(counts.get(t, 0))}
        new = sorted(tp for tp in wanted if tp not in self._positions)
        gone = sorted(tp for tp in self._positions if tp not in wanted)
        if gone:
            client.incremental_unassign([KafkaPartition(*tp) for tp in gone])
            self._drop(gone)
        if new:
            extents = self._engine.admin.extents(new)
            starts = {tp: extents[tp][1 if initial else 0] for tp in new}
            client.incremental_assign([KafkaPartition(*tp, starts[tp]) for tp in new])
            with self._state:
                self._positions.update(starts)
            self._settled = False
        if new or gone:
            with self._state:
                self._rebalances.append(Rebalance(tuple(gone), tuple(new)))

    def _refresh(self, client: Consumer) -> None:
        """Thread: follow topics created or deleted since, when a pattern is subscribed."""
        self._next_refresh = time.monotonic() + METADATA_MAX_AGE_S
        counts = self._engine.admin.partition_counts()
        topics = self._matching(counts)
        if self._group is None:
            self._topics = topics
            self._follow(client, counts, initial=False)
        elif topics != self._topics:
            self._topics = topics
            self._subscribe_to(client, topics)

    def _starts(
        self, client: Consumer, partitions: list[TopicPartition]
    ) -> dict[TopicPartition, int | None]:
        """Thread: where each newly assigned partition starts: its commit, else the reset."""
        committed: dict[TopicPartition, int] = {}
        if self._group is not None:
            try:
                found = client.committed(
                    [KafkaPartition(*tp) for tp in partitions],
                    timeout=self._engine.settings.timeout_s,
                )
            except KafkaException as e:
                # raised inside librdkafka's rebalance callback it would end the consumer's
                # thread: without a start, librdkafka looks the commits up itself
                log.warning("reading committed offsets for %s failed (%s)", partitions, e)
                if self._config.auto_offset_reset == "none":
                    self._failure = translate(e, self._url, "reading committed offsets")
                return dict.fromkeys(partitions)
            committed = {_tp(p): p.offset for p in found if p.offset >= 0}
        policy = self._config.auto_offset_reset
        missing = [tp for tp in partitions if tp not in committed]
        out: dict[TopicPartition, int | None] = dict.fromkeys(partitions)
        out.update(committed)
        if missing and policy != "none":
            extents = self._engine.admin.extents(missing)
            for tp in missing:
                out[tp] = extents[tp][0 if policy == "earliest" else 1]
        return out

    def _on_assign(self, client: Consumer, partitions: list[KafkaPartition]) -> None:
        tps = [_tp(p) for p in partitions]
        starts = self._starts(client, tps) if tps else {}
        chosen = [KafkaPartition(*tp, _or_invalid(starts[tp])) for tp in tps]
        if self._cooperative:
            client.incremental_assign(chosen)
        else:
            client.assign(chosen)
        with self._state:
            self._positions.update(starts)
            self._rebalances.append(Rebalance((), tuple(tps)))
        self._settled = False
        self._joined = True

    def _on_revoke(self, client: Consumer, partitions: list[KafkaPartition]) -> None:
        gone = [_tp(p) for p in partitions]
        if not self._closing and self.commit_source is not None and gone:
            consumed = self.commit_source()
            offsets = {tp: consumed[tp] for tp in gone if tp in consumed}
            if offsets:
                with contextlib.suppress(TidingsError):  # the next owner re-reads: at-least-once
                    self._commit_blocking(offsets)
        self._lose(client, gone)

    def _on_lost(self, client: Consumer, partitions: list[KafkaPartition]) -> None:
        self._lose(client, [_tp(p) for p in partitions])

    def _lose(self, client: Consumer, gone: list[TopicPartition]) -> None:
        if self._cooperative:
            client.incremental_unassign([KafkaPartition(*tp) for tp in gone])
        else:
            client.unassign()
        self._drop(gone)
        if gone:
            with self._state:
                self._rebalances.append(Rebalance(tuple(gone), ()))

    def _drop(self, partitions: Sequence[TopicPartition]) -> None:
        gone = set(partitions)
        with self._state:
            for tp in gone:
                self._positions.pop(tp, None)
                self._paused.discard(tp)
            self._held = [r for r in self._held if (r.topic, r.partition) not in gone]

    async def assign(self, partitions: Sequence[TopicPartition]) -> None:
        """Read exactly these partitions."""
        await self._call(self._assign_blocking, [TopicPartition(*tp) for tp in partitions])

    def _assign_blocking(self, partitions: list[TopicPartition]) -> None:
        client = self._consumer()
        counts = self._engine.admin.partition_counts()
        for tp in partitions:
            if tp.topic not in counts:
                raise TopicNotFoundError(tp.topic)
            if not 0 <= tp.partition < counts[tp.topic]:
                raise PartitionNotFoundError(tp.topic, tp.partition, counts[tp.topic])
        starts = self._starts(client, partitions)
        client.assign([KafkaPartition(*tp, _or_invalid(s)) for tp, s in starts.items()])
        with self._state:
            self._positions = dict(starts)
            self._paused &= set(partitions)
        self._settled = False

    def take_rebalances(self) -> list[Rebalance]:
        """Rebalances since the last call."""
        with self._state:
            return super().take_rebalances()

    # -- reading -------------------------------------------------------------------------

    def poll_blocking(self, max_records: int, timeout_s: float) -> list[Record]:
        """Up to `max_records` records, polled on the calling thread."""
        if self._closed:
            raise ClosedError("consumer is closed")
        with self._state:
            epochs = self._epochs.copy()
        return self._kept(self._locked(self._fetch_runs, max_records, timeout_s), epochs)

    def _kept(self, runs: Runs, epochs: dict[TopicPartition, int]) -> list[Record]:
        """The records of `runs` still wanted, moving the positions past them."""
        out: list[Record] = []
        with self._state:
            for tp, run in runs.items():
                if self._epochs.get(tp, 0) != epochs.get(tp, 0) or tp in self._paused:
                    continue  # moved by a seek while fetching, or paused: read again later
                if tp not in self._positions:
                    continue  # revoked meanwhile
                out += run
                self._positions[tp] = run[-1].offset + 1
        return out

    def _fetch_runs(self, max_records: int, timeout_s: float) -> Runs:
        client = self._consumer()
        if self._ops:
            self._run_ops(client)
            self._settled = False
        if not self._settled:
            # a fetch in flight from before a seek, or the first fetch of a partition just
            # assigned, is still answered: wait for what the new position brings
            timeout_s = max(timeout_s, SETTLE_S)
            self._settled = True
        if self._failure is not None:
            failure, self._failure = self._failure, None
            raise failure
        with self._state:
            held, self._held = self._held[:max_records], self._held[max_records:]
        if held:
            runs: Runs = {}
            for r in held:
                runs.setdefault(TopicPartition(r.topic, r.partition), []).append(r)
            return self._fetched(client, [], max_records - len(held), runs)
        self._check_positions()
        deadline = time.monotonic() + timeout_s
        while True:
            if self._patterns and time.monotonic() >= self._next_refresh:
                self._refresh(client)
            wait = max(0.0, min(deadline - time.monotonic(), POLL_SLICE_S))
            first = client.poll(wait)
            if first is not None:
                runs = self._fetched(client, [first], max_records - 1, {})
                if runs or time.monotonic() >= deadline:
                    return runs
            elif time.monotonic() >= deadline:
                return {}

    def _fetched(self, client: Consumer, messages: list[Message], wanted: int, runs: Runs) -> Runs:
        """Thread: `runs` with the records of `messages` and of up to `wanted` more already
        fetched. Messages are asked for DRAIN_CHUNK at a time and freed as soon as their
        records are made: the collector then finds them young, and the records, untracked
        by it (see records_from), add nothing for it to scan."""
        self._records(messages, runs)
        messages.clear()
        while wanted > 0:
            more = client.consume(min(wanted, DRAIN_CHUNK), FETCHED_WAIT_S)
            if not more:
                break
            wanted -= len(more)
            self._records(more, runs)
        return runs

    def _check_positions(self) -> None:
        """Thread: a partition with no commit to start from and reset 'none' is an error."""
        if self._config.auto_offset_reset != "none":
            return  # None: a start librdkafka finds itself (the commit, else the reset)
        for tp, position in self._positions.copy().items():
            if position is None and tp not in self._paused:
                start, end = self._engine.admin.extents([tp])[tp]
                raise OffsetOutOfRangeError(tp.topic, tp.partition, -1, start, end)

    def _records(self, messages: list[Message], runs: Runs) -> Runs:
        """Thread: records from librdkafka's messages, added to their partitions' runs."""
        if any(map(Message.error, messages)):
            for msg in messages:
                err = msg.error()
                if err is not None:
                    self._raise_for(err, msg)
            messages = [msg for msg in messages if msg.error() is None]
        records, starts = _made(messages, Message, Record, NO_HEADERS)
        for start, end in pairwise([*starts, len(records)]):
            first = records[start]
            run = runs.setdefault(TopicPartition(first.topic, first.partition), [])
            run += records[start:end]
        return runs

    def _raise_for(self, err: KafkaError, msg: Message) -> None:
        """Thread: raise the tidings error for an error event; log the transient ones."""
        code = err.code()
        if code == KafkaError._AUTO_OFFSET_RESET:
            tp = _where(msg)
            start, end = self._engine.admin.extents([tp])[tp]
            position = self._positions.get(tp)
            raise OffsetOutOfRangeError(
                tp.topic, tp.partition, -1 if position is None else position, start, end
            )
        if code == KafkaError.INCONSISTENT_GROUP_PROTOCOL:
            raise GroupError(
                self._group or "",
                f"cannot join group {self._group!r}: its members use another assignment "
                f"strategy than {self._config.strategy!r}; give every member the same one",
            )
        if err.fatal() or code in (
            KafkaError._AUTHENTICATION,
            KafkaError.GROUP_AUTHORIZATION_FAILED,
        ):
            raise translate(err, self._url, "consuming")
        log.warning("consumer of %s: %s", self._url, err.str())

    # -- positions and commits -----------------------------------------------------------

    async def _extent(self, tp: TopicPartition) -> tuple[int, int]:
        return (await self._call(self._engine.admin.extents, [tp]))[tp]

    def rewind(self, partition: TopicPartition, offset: int) -> None:
        """Make `offset` the next record of `partition` (records given back, or a seek)."""
        with self._state:
            self._positions[partition] = offset
            self._epochs[partition] = self._epochs.get(partition, 0) + 1
            self._held = [r for r in self._held if (r.topic, r.partition) != partition]
        self._ops.append(lambda client: self._seek_blocking(client, partition))

    def _seek_blocking(self, client: Consumer, partition: TopicPartition) -> None:
        with self._state:
            position = self._positions.get(partition)
            paused = partition in self._paused
        if position is None or paused:
            return  # revoked since, or seeks again when resumed
        try:
            client.seek(KafkaPartition(*partition, position))
        except KafkaException as e:  # not fetching yet: assign it at the position instead
            log.debug("seek of %s failed (%s); assigning at %d", partition, e, position)
            if self._cooperative:
                client.incremental_unassign([KafkaPartition(*partition)])
                client.incremental_assign([KafkaPartition(*partition, position)])
            else:
                client.assign(
                    [
                        KafkaPartition(*tp, _or_invalid(pos))
                        for tp, pos in self._positions.copy().items()
                    ]
                )

    async def commit(self, offsets: dict[TopicPartition, int] | None = None) -> None:
        """Commit positions (or `offsets`) to the group."""
        group, offsets = self._to_commit(offsets)
        if not offsets:
            return
        owned = self._positions.copy()
        foreign = sorted(tp for tp in offsets if tp not in owned)
        if foreign:
            raise CommitFailedError(
                group,
                f"commit failed: {foreign[0].topic}[{foreign[0].partition}] is not assigned to "
                f"this member of group {group!r}; commit only the partitions it owns",
            )
        await self._call(self._commit_blocking, dict(offsets))

    def _commit_blocking(self, offsets: dict[TopicPartition, int]) -> None:
        assert self._group is not None
        client = self._consumer()
        try:
            client.commit(
                offsets=[KafkaPartition(*tp, off) for tp, off in offsets.items()],
                asynchronous=False,
            )
        except KafkaException as e:
            err = kafka_error(e)
            if err is not None and err.code() in OUT_OF_GROUP:
                raise CommitFailedError(
                    self._group,
                    f"commit failed: this consumer is out of group {self._group!r} (it did not "
                    f"poll or heartbeat in time, or the group is rebalancing); its partitions "
                    f"go to other members and will be re-read ({err.str()})",
                ) from e
            raise translate(e, self._url, f"committing offsets of group {self._group!r}") from e

    async def committed(self, partitions: Sequence[TopicPartition]) -> dict[TopicPartition, int]:
        """The group's committed offsets."""
        if self._group is None or not partitions:
            return {}
        return await self._call(self._committed_blocking, list(partitions))

    def _committed_blocking(self, partitions: list[TopicPartition]) -> dict[TopicPartition, int]:
        client = self._consumer()
        try:
            found = client.committed(
                [KafkaPartition(*tp) for tp in partitions], timeout=self._engine.settings.timeout_s
            )
        except KafkaException as e:
            raise translate(e, self._url, f"reading offsets of group {self._group!r}") from e
        return {_tp(p): p.offset for p in found if p.offset >= 0}

    async def offsets_for_times(
        self, timestamps: dict[TopicPartition, int]
    ) -> dict[TopicPartition, int | None]:
        """First offset at or after each time."""
        if not timestamps:
            return {}
        return await self._call(self._offsets_for_times_blocking, dict(timestamps))

    def _offsets_for_times_blocking(
        self, timestamps: dict[TopicPartition, int]
    ) -> dict[TopicPartition, int | None]:
        client = self._consumer()
        try:
            found = client.offsets_for_times(
                [KafkaPartition(*tp, ts) for tp, ts in timestamps.items()],
                timeout=self._engine.settings.timeout_s,
            )
        except KafkaException as e:
            raise translate(e, self._url, "looking up offsets by time") from e
        return {_tp(p): p.offset if p.offset >= 0 else None for p in found}

    def pause(self, partitions: Sequence[TopicPartition]) -> None:
        """Stop returning records from `partitions`."""
        tps = [TopicPartition(*tp) for tp in partitions]
        with self._state:
            self._paused.update(tps)
            self._held = [r for r in self._held if (r.topic, r.partition) not in set(tps)]
        self._ops.append(lambda client: client.pause([KafkaPartition(*tp) for tp in tps]))

    def resume(self, partitions: Sequence[TopicPartition]) -> None:
        """Return records from `partitions` again, from where this consumer left them."""
        with self._state:
            tps = [TopicPartition(*tp) for tp in partitions if tuple(tp) in self._paused]
            self._paused.difference_update(tps)

        def resume(client: Consumer) -> None:
            client.resume([KafkaPartition(*tp) for tp in tps])
            for tp in tps:
                self._seek_blocking(client, tp)

        self._ops.append(resume)

    async def close(self) -> None:
        """Leave the group and stop the consumer thread."""
        if self._closed:
            return
        try:
            await self._call(self._close_blocking)
        finally:
            self._closed = True
            self._thread.shutdown(wait=False)

    def _close_blocking(self) -> None:
        self._closing = True
        if self._client is not None:
            try:
                self._client.close()
            except (KafkaException, RuntimeError) as e:
                log.warning("closing a consumer of %s: %s", self._url, e)
