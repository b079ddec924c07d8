"""Queues on JetStream: a share group is a durable pull consumer on each partition stream.

- lock = a delivery awaiting its ack; `lock_timeout_ms` is the consumer's AckWait;
- accept = ack, release = nak (with a delay: nak with delay), extend = in-progress acks
  (sent every third of the lock until the extension ends, as AckWait is fixed);
- reject = copy to the dead-letter topic, then term;
- the delivery count is JetStream's; `max_deliver` is max_deliveries + 2: one delivery
  more moves the record to the dead letters (done by a consumer, so it never depends on
  an advisory nobody may be listening to), one more for a job sent with a delay, which
  its first fetch holds back with a nak until due.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Sequence
from typing import TYPE_CHECKING

import nats.errors
from nats.aio.msg import Msg
from nats.js import api
from nats.js.client import JetStreamContext
from tidings.core.errors import ClosedError
from tidings.core.records import DELIVER_AT, Record, TopicPartition, TopicSpec, now_ms
from tidings.engines.base import (
    Ack,
    AckKind,
    ColumnBatch,
    Delivery,
    EngineShareConsumer,
    QueueDepth,
    ShareConfig,
)
from tidings.engines.nats import names
from tidings.engines.nats.connection import translated
from tidings.engines.redrive import (
    REDRIVE_PREFIX,
    dead_letter_headers,
    header_int,
    redrive_group,
)

if TYPE_CHECKING:
    from tidings.engines.nats.engine import NatsEngine

SPREAD_WAIT_S = 0.1
"""With several partitions, how long one round of fetches waits before trying again."""


class _Held:
    """A delivery this consumer holds: its message (to settle) and its lock."""

    __slots__ = ("lock_until", "msg", "record", "renew_until")

    def __init__(self, msg: Msg, record: Record, lock_until: int) -> None:
        self.msg, self.record, self.lock_until = msg, record, lock_until
        self.renew_until = 0


class NatsShareConsumer(EngineShareConsumer):
    """One member of a share group: fetches, settles and dead-letters messages."""

    def __init__(self, engine: NatsEngine, config: ShareConfig) -> None:
        self._engine = engine
        self._config = config
        self._subs: dict[int, JetStreamContext.PullSubscription] = {}
        self._held: dict[tuple[int, int], _Held] = {}
        self._renewer: asyncio.Task[None] | None = None
        self._rotation = 0
        self._closed = False

    async def _bind(self) -> list[int]:
        """Create (or update) the durable consumers and bind to them; the partitions."""
        spec = await self._engine.topic(self._config.topic)
        for p in range(spec.partitions):
            if p not in self._subs:
                self._subs[p] = await bind(self._engine, self._config, p)
        return sorted(self._subs)

    async def acquire(
        self,
        max_records: int,
        timeout_s: float,
        acks: Sequence[Ack] = (),
        refused: list[Ack] | None = None,
    ) -> list[Delivery]:
        """Fetch up to `max_records`, waiting up to `timeout_s` for the first; settle first."""
        if self._closed:
            raise ClosedError("queue is closed")
        if acks:
            left = await self.acknowledge(acks)
            if refused is not None:
                refused.extend(left)
        deadline = time.monotonic() + timeout_s
        while True:
            partitions = await self._bind()
            remaining = max(0.0, deadline - time.monotonic())
            wait = remaining if len(partitions) == 1 else min(remaining, SPREAD_WAIT_S)
            asked = now_ms()
            msgs = await self._fetch_round(partitions, max_records, wait)
            out = await self._admit(msgs, asked)
            if out or time.monotonic() >= deadline:
                return out

    async def _fetch_round(self, partitions: list[int], wanted: int, wait: float) -> list[Msg]:
        """Fetch from the partitions in turn, `wanted` spread over them."""
        self._rotation = (self._rotation + 1) % len(partitions)
        order = partitions[self._rotation :] + partitions[: self._rotation]
        share, extra = divmod(wanted, len(order))
        counts = [share + (1 if i < extra else 0) for i in range(len(order))]
        fetches = [
            self._fetch(self._subs[p], n, wait) for p, n in zip(order, counts, strict=True) if n
        ]
        return [m for got in await asyncio.gather(*fetches) for m in got]

    async def _fetch(
        self, sub: JetStreamContext.PullSubscription, count: int, wait: float
    ) -> list[Msg]:
        with translated(self._engine.url, f"fetch from queue {self._config.topic!r}"):
            try:
                return await sub.fetch(count, timeout=max(wait, 0.001))
            except (TimeoutError, nats.errors.TimeoutError):
                return []

    async def _admit(self, msgs: list[Msg], asked: int) -> list[Delivery]:
        """Deliveries from messages fetched by a request sent at `asked` (ms): not-yet-due
        ones go back, spent ones die."""
        config = self._config
        out: list[Delivery] = []
        now = now_ms()
        for msg in msgs:
            meta = msg.metadata
            partition = _partition_of(meta.stream)
            stored = names.stored_ms(msg)
            record = names.to_record(config.topic, partition, msg, meta.sequence.stream, stored)
            # The server's lock (AckWait) began when it delivered the message, which was
            # after the request went out and after the message was stored, and before now.
            # The lock here ends no later than the server's, so a job is never acked after
            # the server has handed it to another consumer.
            lock_until = min(now, max(asked, stored)) + config.lock_timeout_ms
            due = header_int(record, DELIVER_AT)
            deliveries = meta.num_delivered
            if due > stored and deliveries > 1:
                deliveries -= 1  # the fetch that held it back until due is not counted
            if due > now:
                with translated(self._engine.url, "hold back a delayed job"):
                    await msg.nak(delay=(due - now) / 1000)
                continue
            if deliveries > config.max_deliveries:
                n = deliveries - 1
                await self._dead_letter(
                    msg, record, n, f"delivered {n} times without being accepted"
                )
                continue
            self._held[(partition, record.offset)] = _Held(msg, record, lock_until)
            out.append(Delivery(record, deliveries, lock_until))
        return out

    async def acknowledge(self, acks: Sequence[Ack]) -> list[Ack]:
        """Settle deliveries; acks for locks already lost are returned."""
        refused: list[Ack] = []
        now = now_ms()
        with translated(self._engine.url, f"settle jobs of queue {self._config.topic!r}"):
            for ack in _each(acks):
                key = (ack.partition.partition, ack.offset)
                held = self._held.get(key)
                if held is None or max(held.lock_until, held.renew_until) <= now:
                    self._held.pop(key, None)
                    refused.append(ack)
                    continue
                if ack.kind == AckKind.RENEW:
                    held.renew_until = now + ack.delay_ms
                    await held.msg.in_progress()
                    self._start_renewer()
                    continue
                del self._held[key]
                if ack.kind == AckKind.ACCEPT:
                    await held.msg.ack()
                elif ack.kind == AckKind.RELEASE:
                    await held.msg.nak(delay=ack.delay_ms / 1000 if ack.delay_ms else None)
                else:
                    n = held.msg.metadata.num_delivered
                    await self._dead_letter(held.msg, held.record, n, ack.reason or "rejected")
            await asyncio.wait_for(self._engine.nc.flush(), self._engine.timeout)
        return refused

    def _start_renewer(self) -> None:
        if self._renewer is None or self._renewer.done():
            self._renewer = asyncio.get_running_loop().create_task(self._renew_forever())

    async def _renew_forever(self) -> None:
        """Keep extended locks: in-progress acks every third of the lock, until each ends."""
        interval = self._config.lock_timeout_ms / 3000
        while not self._closed:
            await asyncio.sleep(interval)
            now = now_ms()
            renewing = [h for h in self._held.values() if h.renew_until > now]
            if not renewing:
                return
            for held in renewing:
                with contextlib.suppress(Exception):  # lost: the lock expires, as it may
                    await held.msg.in_progress()

    async def _dead_letter(self, msg: Msg, record: Record, deliveries: int, reason: str) -> None:
        """Copy the record to the dead-letter topic (if any), then terminate it here."""
        target = self._config.dead_letter_topic
        if target is not None:
            spec = await self._engine.topic(target)
            batch = ColumnBatch(
                target,
                record.partition % spec.partitions,
                [record.value],
                [record.key],
                [record.timestamp],
                [dead_letter_headers(record, deliveries, reason)],
            )
            await self._engine.append([batch])
        with translated(self._engine.url, "terminate a dead-lettered job"):
            await msg.term()

    async def close(self) -> None:
        """Unbind; jobs still held return to the group when their locks expire."""
        self._closed = True
        if self._renewer is not None:
            self._renewer.cancel()
        for sub in self._subs.values():
            with contextlib.suppress(Exception):  # a closed connection: nothing to unbind
                await sub.unsubscribe()
        self._subs.clear()


async def bind(
    engine: NatsEngine, config: ShareConfig, partition: int
) -> JetStreamContext.PullSubscription:
    """The group's durable consumer on one partition, created or updated, bound."""
    stream = names.stream_name(config.topic, partition)
    durable = names.share_consumer_name(config.group)
    consumer = api.ConsumerConfig(
        durable_name=durable,
        ack_policy=api.AckPolicy.EXPLICIT,
        ack_wait=config.lock_timeout_ms / 1000,
        max_deliver=config.max_deliveries + 2,
        deliver_policy=(
            api.DeliverPolicy.ALL
            if config.auto_offset_reset == "earliest"
            else api.DeliverPolicy.NEW
        ),
        max_ack_pending=config.max_locks,
        filter_subject=names.subject(config.topic, partition),
        metadata={names.GROUP_META: config.group, names.TOPIC_META: config.topic},
    )
    js = engine.js
    what = f"open share group {config.group!r} on {config.topic}[{partition}]"
    try:
        info: api.ConsumerInfo | None = await engine.call(what, js.consumer_info(stream, durable))
    except Exception as e:
        from tidings.engines.nats.engine import _not_found

        if not _not_found(e):
            raise
        info = None
    if info is None or _differs(info.config, consumer):
        if info is not None:  # settings the start position excepted, the last opener's
            consumer.deliver_policy = info.config.deliver_policy
        await engine.call(what, js.add_consumer(stream, consumer))
    sub: JetStreamContext.PullSubscription = await engine.call(
        what, js.pull_subscribe_bind(durable=durable, stream=stream)
    )
    return sub


def _differs(current: api.ConsumerConfig, wanted: api.ConsumerConfig) -> bool:
    return (current.ack_wait, current.max_deliver, current.max_ack_pending) != (
        wanted.ack_wait,
        wanted.max_deliver,
        wanted.max_ack_pending,
    )


def _partition_of(stream: str) -> int:
    """The partition a stream holds (its name is tidings-<partition>-<topic>)."""
    return int(stream.split("-", 2)[1])


def _each(acks: Sequence[Ack]) -> list[Ack]:
    """The acks with ranged accepts split into one per offset."""
    out: list[Ack] = []
    for a in acks:
        if a.length == 1:
            out.append(a)
        else:
            out.extend(Ack(a.partition, o, a.kind) for o in range(a.offset, a.offset + a.length))
    return out


# -- administration ----------------------------------------------------------------------


async def _consumer_info(
    engine: NatsEngine, group: str, topic: str, partition: int
) -> api.ConsumerInfo | None:
    from tidings.engines.nats.engine import _not_found

    stream = names.stream_name(topic, partition)
    try:
        info: api.ConsumerInfo = await engine.call(
            f"read share group {group!r}",
            engine.js.consumer_info(stream, names.share_consumer_name(group)),
        )
    except Exception as e:
        if _not_found(e):
            return None
        raise
    return info


async def queue_depth(engine: NatsEngine, group: str, spec: TopicSpec) -> list[QueueDepth]:
    """Per partition: messages not yet delivered, and delivered ones awaiting their ack.

    JetStream does not tell a job released with a delay from one locked by a consumer:
    both count as in flight; `delayed` is always 0.
    """
    out = []
    extents = await engine.partition_states(spec)
    for extent in extents:
        info = await _consumer_info(engine, group, spec.name, extent.partition)
        if info is None:
            available, in_flight = extent.end_offset - extent.start_offset, 0
        else:
            available, in_flight = info.num_pending or 0, info.num_ack_pending or 0
        out.append(QueueDepth(spec.name, extent.partition, available, in_flight, 0))
    return out


async def list_queues(engine: NatsEngine) -> list[tuple[str, str]]:
    """Every (share group, topic) with durable consumers, redrive markers left out."""
    found: set[tuple[str, str]] = set()
    for spec in await engine.list_topics():
        for p in range(spec.partitions):
            stream = names.stream_name(spec.name, p)
            infos: list[api.ConsumerInfo] = await engine.call(
                f"list consumers of {spec.name}[{p}]", engine.js.consumers_info(stream)
            )
            for info in infos:
                meta = info.config.metadata or {}
                group = meta.get(names.GROUP_META)
                if group is not None and not group.startswith(REDRIVE_PREFIX):
                    found.add((group, spec.name))
    return sorted(found)


async def delete_share_group(engine: NatsEngine, group: str) -> None:
    """Delete the group's durable consumers on every topic."""
    from tidings.engines.nats.engine import _not_found

    durable = names.share_consumer_name(group)
    for spec in await engine.list_topics():
        for p in range(spec.partitions):
            try:
                await engine.call(
                    f"delete share group {group!r}",
                    engine.js.delete_consumer(names.stream_name(spec.name, p), durable),
                )
            except Exception as e:
                if not _not_found(e):
                    raise


async def peek(
    engine: NatsEngine, config: ShareConfig, spec: TopicSpec, max_records: int
) -> list[Record]:
    """Records after what the group was last handed, due ones only, unlocked.

    Jobs released back to the group are not shown: JetStream keeps them inside the
    consumer, out of sight.
    """
    out: list[Record] = []
    now = now_ms()
    for extent in await engine.partition_states(spec):
        p = extent.partition
        info = await _consumer_info(engine, config.group, spec.name, p)
        if info is not None:
            start = info.delivered.stream_seq if info.delivered else 0
        elif config.auto_offset_reset == "earliest":
            start = extent.start_offset
        else:
            continue
        offset = max(start or 0, extent.start_offset)
        while len(out) < max_records and offset < extent.end_offset:
            records = await engine.read(TopicPartition(spec.name, p), offset, 1000)
            if not records:
                break
            out.extend(r for r in records if header_int(r, DELIVER_AT) <= now)
            offset = records[-1].offset + 1
    return out[:max_records]


async def purge(engine: NatsEngine, config: ShareConfig) -> int:
    """Fetch and accept every job available to the group now; how many."""
    taker = NatsShareConsumer(engine, config)
    purged = 0
    try:
        for p in await taker._bind():
            while msgs := await taker._fetch(taker._subs[p], 1000, 0.05):
                for msg in msgs:
                    await msg.ack()
                purged += len(msgs)
        await asyncio.wait_for(engine.nc.flush(), engine.timeout)
    finally:
        await taker.close()
    return purged


async def dead_letters(engine: NatsEngine, config: ShareConfig) -> int:
    """Records in the dead-letter topic not redriven yet (0 without one)."""
    if config.dead_letter_topic is None:
        return 0
    spec = await engine.topic(config.dead_letter_topic, fresh=True)
    depth = await queue_depth(engine, redrive_group(config.group), spec)
    return sum(d.available + d.in_flight + d.delayed for d in depth)
