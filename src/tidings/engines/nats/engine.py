"""NatsEngine: tidings on NATS JetStream (see docs/nats.md for the mapping).

Topics are KV entries naming their partitions; each partition is a stream. Consumer
groups run tidings' own group protocol (engines.groups.coordinator) over a KV bucket with
compare-and-set, so assignment, generations and committed offsets are exactly the log
engine's. Queues are durable pull consumers (see `queue`).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import Awaitable, Callable, Sequence
from itertools import repeat
from typing import TypeVar

import nats.js.errors
from nats.aio.client import Client
from nats.js import JetStreamContext, api
from nats.js.kv import KeyValue
from tidings.core.errors import (
    CapabilityError,
    ClosedError,
    ConfigurationError,
    EngineUnavailableError,
    InvalidPartitionsError,
    TidingsError,
    TopicExistsError,
    TopicNotFoundError,
)
from tidings.core.records import (
    NO_HEADERS,
    Record,
    TopicConfig,
    TopicPartition,
    TopicSpec,
    validate_partitions,
)
from tidings.engines import redrive
from tidings.engines.base import (
    AppendResult,
    Capability,
    ColumnBatch,
    ConsumerConfig,
    Engine,
    EngineConsumer,
    EngineShareConsumer,
    GroupDescription,
    PartitionState,
    QueueDepth,
    ShareConfig,
)
from tidings.engines.groups import coordinator
from tidings.engines.groups.coordinator import GroupState
from tidings.engines.nats import names
from tidings.engines.nats.connection import (
    NatsOptions,
    bounded,
    connect,
    parse_url,
    safe_url,
    translated,
)
from tidings.engines.nats.names import escape, unescape

R = TypeVar("R")
log = logging.getLogger("tidings")

NATS_CAPABILITIES = frozenset(
    {
        Capability.CONSUMER_GROUPS,
        Capability.OFFSETS_FOR_TIMES,
        Capability.MULTI_PROCESS,
        Capability.DURABLE,
        Capability.SHARE_GROUPS,
        Capability.EXACT_RECORD_LIMIT,
    }
)
"""What JetStream gives honestly: no compaction by key, retention by the server's clock
(not records' timestamps), no priorities, no inspection of a queue's released jobs."""

PUBLISH_PENDING = 4_000
"""Unacknowledged publishes one connection may have in flight (nats-py's default).
A deeper window publishes more slowly: 65,536 measured 0.83x of this one's rate."""


def _spec_to_json(spec: TopicSpec) -> bytes:
    return json.dumps({"partitions": spec.partitions, "config": spec.config.to_dict()}).encode()


def _spec_from_json(name: str, raw: bytes) -> TopicSpec:
    data = json.loads(raw)
    return TopicSpec(name, data["partitions"], TopicConfig(**data["config"]))


class NatsEngine(Engine):
    """Topics, records and groups on a NATS server with JetStream."""

    def __init__(self, url: str) -> None:
        self.url = safe_url(url)
        """The server's address without credentials, for messages."""
        self._raw_url = url
        self.capabilities = NATS_CAPABILITIES
        self.options: NatsOptions = parse_url(url)
        self.timeout = self.options.request_timeout
        self._nc: Client | None = None
        self._js: JetStreamContext | None = None
        self._topics: KeyValue | None = None
        self._groups: KeyValue | None = None
        self._specs: dict[str, TopicSpec] = {}
        self._locks: dict[str, asyncio.Lock] = {}
        self._loop: asyncio.AbstractEventLoop | None = None
        self._watcher: asyncio.Task[None] | None = None
        self._closed = False

    # -- lifecycle -----------------------------------------------------------------------

    async def start(self) -> None:
        """Connect, check JetStream, open the topic and group buckets."""
        self._loop = asyncio.get_running_loop()
        self._nc = await connect(self.options, self._raw_url)
        try:
            self._js = self._nc.jetstream(
                timeout=self.timeout, publish_async_max_pending=PUBLISH_PENDING
            )
            try:
                await self.call("read the account", self._js.account_info())
            except EngineUnavailableError:
                raise
            except TidingsError as e:
                raise ConfigurationError(
                    f"the NATS server at {self.url} does not offer JetStream ({e}); "
                    f"start it with nats-server -js"
                ) from e
            self._topics = await self._bucket(names.TOPICS_BUCKET)
            self._groups = await self._bucket(names.GROUPS_BUCKET)
            await self.refresh_topics()
        except BaseException:
            await self._nc.close()
            raise
        self._watcher = asyncio.create_task(self._watch_topics())

    async def _bucket(self, name: str) -> KeyValue:
        js = self.js
        with translated(self.url, f"open the KV bucket {name!r}"):
            try:
                return await asyncio.wait_for(js.key_value(name), self.timeout)
            except nats.js.errors.BucketNotFoundError:
                config = api.KeyValueConfig(bucket=name, history=1, storage=api.StorageType.FILE)
                return await asyncio.wait_for(js.create_key_value(config), self.timeout)

    async def close(self) -> None:
        """Stop watching topics and close the connection (pending publishes first)."""
        if self._closed:
            return
        self._closed = True
        if self._watcher is not None:
            self._watcher.cancel()
        if self._nc is not None:
            with contextlib.suppress(Exception):  # a dead server: nothing left to flush
                await asyncio.wait_for(self._nc.close(), self.timeout)

    @property
    def nc(self) -> Client:
        """The connection (ClosedError once closed)."""
        if self._closed or self._nc is None:
            raise ClosedError(f"the engine at {self.url} is closed; connect again")
        return self._nc

    @property
    def js(self) -> JetStreamContext:
        """The JetStream context of the connection."""
        if self._closed or self._js is None:
            raise ClosedError(f"the engine at {self.url} is closed; connect again")
        return self._js

    async def call(self, what: str, awaitable: Awaitable[R]) -> R:
        """Await a NATS request bounded by the request timeout, errors translated."""
        return await bounded(awaitable, self.timeout, self.url, what)

    # -- topics --------------------------------------------------------------------------

    async def _watch_topics(self) -> None:
        """Keep the topic cache current: other processes create and change topics too."""
        assert self._topics is not None
        while not self._closed:
            try:
                watcher = await self._topics.watchall()
                async for entry in watcher:
                    if entry is None:
                        continue
                    name = unescape(entry.key)
                    if entry.operation in ("DEL", "PURGE") or not entry.value:
                        self._specs.pop(name, None)
                    else:
                        self._specs[name] = _spec_from_json(name, entry.value)
            except asyncio.CancelledError:
                raise
            except Exception as e:  # the server went away: watch again once it is back
                log.debug("watching topics on %s: %s", self.url, e)
                await asyncio.sleep(0.5)

    async def create_topic(self, spec: TopicSpec, exist_ok: bool = False) -> bool:
        """Create the topic's entry, then a stream per partition."""
        if exist_ok and spec.name in self._specs:
            return False
        self._check_config(spec.config)
        kv = self._kv_topics
        try:
            await self.call(
                f"create topic {spec.name!r}",
                kv.create(escape(spec.name), _spec_to_json(spec), validate_keys=False),
            )
        except Exception as e:
            if not _wrong_last(e):
                raise
            if not exist_ok:
                raise TopicExistsError(spec.name) from None
            await self.refresh_topics()
            return False
        try:
            for p in range(spec.partitions):
                await self._create_stream(spec, p)
        except BaseException:
            with contextlib.suppress(Exception):
                await self._drop_topic(spec.name, spec.partitions)
            raise
        self._specs[spec.name] = spec
        return True

    def _check_config(self, config: TopicConfig) -> None:
        if config.compact:
            raise CapabilityError(
                f"cleanup_policy={config.cleanup_policy!r} needs the 'compaction' capability, "
                f"which the engine at {self.url} does not provide (JetStream keeps records "
                f"by count or age, not the latest per key); use cleanup_policy='delete'"
            )

    def _stream_config(self, spec: TopicSpec, partition: int) -> api.StreamConfig:
        config = spec.config
        return api.StreamConfig(
            name=names.stream_name(spec.name, partition),
            subjects=[names.subject(spec.name, partition)],
            storage=api.StorageType.FILE,
            retention=api.RetentionPolicy.LIMITS,
            discard=api.DiscardPolicy.OLD,
            max_age=(config.retention_ms or 0) / 1000,
            max_bytes=config.retention_bytes if config.retention_bytes is not None else -1,
            allow_direct=True,
            metadata={names.TOPIC_META: spec.name, "tidings.partition": str(partition)},
        )

    async def _create_stream(self, spec: TopicSpec, partition: int) -> None:
        name = names.stream_name(spec.name, partition)
        await self.call(
            f"create stream {name!r} for {spec.name}[{partition}]",
            self.js.add_stream(self._stream_config(spec, partition)),
        )

    async def delete_topic(self, name: str) -> None:
        """Delete the streams of the topic, then its entry."""
        spec = await self.topic(name, fresh=True)
        await self._drop_topic(name, spec.partitions)
        self._specs.pop(name, None)

    async def _drop_topic(self, name: str, partitions: int) -> None:
        for p in range(partitions):
            stream = names.stream_name(name, p)
            try:
                await self.call(f"delete stream {stream!r}", self.js.delete_stream(stream))
            except Exception as e:
                if not _not_found(e):
                    raise
        await self.call(f"delete topic {name!r}", self._kv_topics.purge(escape(name)))

    async def list_topics(self) -> list[TopicSpec]:
        """Every topic, read from the bucket now."""
        specs = await self.refresh_topics()
        return [specs[name] for name in sorted(specs)]

    async def refresh_topics(self) -> dict[str, TopicSpec]:
        """Read every topic's entry."""
        kv = self._kv_topics
        keys = await self._bucket_keys(names.TOPICS_BUCKET, "list topics")
        specs = {}
        for key in keys:
            try:
                entry = await self.call(f"read topic {key!r}", kv.get(key, validate_keys=False))
            except Exception as e:
                if _not_found(e):
                    continue
                raise
            if entry.value:
                specs[unescape(key)] = _spec_from_json(unescape(key), entry.value)
        self._specs = specs
        return specs

    async def topic(self, name: str, fresh: bool = False) -> TopicSpec:
        """A topic's spec (read from the bucket when not cached, or when `fresh`)."""
        spec = None if fresh else self._specs.get(name)
        if spec is None:
            try:
                entry = await self.call(
                    f"read topic {name!r}", self._kv_topics.get(escape(name), validate_keys=False)
                )
            except Exception as e:
                if _not_found(e):
                    self._specs.pop(name, None)
                    raise TopicNotFoundError(name) from None
                raise
            spec = self._specs[name] = _spec_from_json(name, entry.value or b"{}")
        return spec

    def cached_topic(self, name: str) -> TopicSpec | None:
        """A topic's spec from the cache the watcher keeps."""
        return self._specs.get(name)

    def lookup_topic(self, name: str) -> TopicSpec:
        """A topic's spec read now (from the cache when called on the engine's loop)."""
        loop = self._loop
        if loop is None or loop.is_closed():
            raise ClosedError(f"the engine at {self.url} is not running")
        try:
            running = asyncio.get_running_loop()
        except RuntimeError:
            running = None
        if running is loop:  # cannot wait for the loop on itself: trust the watched cache
            spec = self._specs.get(name)
            if spec is None:
                raise TopicNotFoundError(name)
            return spec
        return asyncio.run_coroutine_threadsafe(self.topic(name, fresh=True), loop).result(
            self.timeout * 2
        )

    async def partition_states(self, spec: TopicSpec) -> list[PartitionState]:
        """The extent of every partition, from the streams' state."""
        out = []
        for p in range(spec.partitions):
            info = await self.stream_info(spec.name, p)
            state = info.state
            out.append(PartitionState(p, max(0, state.first_seq - 1), state.last_seq, state.bytes))
        return out

    async def stream_info(self, topic: str, partition: int) -> api.StreamInfo:
        """The stream of one partition (TopicNotFoundError when it is gone)."""
        stream = names.stream_name(topic, partition)
        try:
            info: api.StreamInfo = await self.call(
                f"read stream {stream!r}", self.js.stream_info(stream)
            )
        except Exception as e:
            if _not_found(e):
                raise TopicNotFoundError(topic) from None
            raise
        return info

    async def describe_topic(self, name: str) -> tuple[TopicSpec, list[PartitionState]]:
        """Spec and partition extents."""
        spec = await self.topic(name, fresh=True)
        return spec, await self.partition_states(spec)

    async def alter_topic(self, name: str, config: TopicConfig) -> TopicSpec:
        """Change the settings: the streams' limits and the topic's entry."""
        spec = await self.topic(name, fresh=True)
        self._check_config(config)
        new = TopicSpec(name, spec.partitions, config)
        for p in range(spec.partitions):
            await self.call(
                f"update stream of {name}[{p}]", self.js.update_stream(self._stream_config(new, p))
            )
        await self.call(
            f"update topic {name!r}",
            self._kv_topics.put(escape(name), _spec_to_json(new), validate_keys=False),
        )
        self._specs[name] = new
        return new

    async def add_partitions(self, name: str, total: int) -> TopicSpec:
        """Add streams for the new partitions, then record the new count."""
        validate_partitions(total)
        spec = await self.topic(name, fresh=True)
        if total <= spec.partitions:
            raise InvalidPartitionsError(
                f"topic {name!r} has {spec.partitions} partitions; the new count must be "
                f"larger (partitions can be added, never removed), not {total}"
            )
        new = TopicSpec(name, total, spec.config)
        for p in range(spec.partitions, total):
            await self._create_stream(new, p)
        await self.call(
            f"update topic {name!r}",
            self._kv_topics.put(escape(name), _spec_to_json(new), validate_keys=False),
        )
        self._specs[name] = new
        return new

    @property
    def _kv_topics(self) -> KeyValue:
        if self._closed or self._topics is None:
            raise ClosedError(f"the engine at {self.url} is closed; connect again")
        return self._topics

    # -- records -------------------------------------------------------------------------

    async def append(self, batches: Sequence[ColumnBatch]) -> list[AppendResult]:
        """Publish each record as a message and wait for every acknowledgement.

        Batches for one partition go one at a time from this process, so a batch's
        records get consecutive offsets.
        """
        results = []
        for batch in batches:
            results.append(await self._append_one(batch))
        return results

    async def _append_one(self, batch: ColumnBatch) -> AppendResult:
        topic, partition, values, keys, timestamps, headers = batch
        spec = self._specs.get(topic) or await self.topic(topic)
        if not 0 <= partition < spec.partitions:
            spec = await self.topic(topic, fresh=True)
        rows = zip(
            values,
            repeat(None) if keys is None else keys,
            timestamps,
            repeat(NO_HEADERS) if headers is None else headers,
            strict=False,  # repeat() stands for a column no record has
        )
        subject = names.subject(topic, partition)
        publish, message_headers = self.js.publish_async, names.message_headers
        lock = self._locks.setdefault(subject, asyncio.Lock())
        # The lock keeps another batch's records out from between this one's; their
        # acknowledgements are awaited outside it, so the next batch is published at once.
        async with lock:
            with translated(self.url, f"publish to {topic}[{partition}]"):
                acks = [
                    await publish(
                        subject, value or b"", headers=message_headers(ts, key, value, hdrs)
                    )
                    for value, key, ts, hdrs in rows
                ]
        try:
            done = await self.call(f"publish to {topic}[{partition}]", asyncio.gather(*acks))
        except nats.js.errors.NoStreamResponseError:
            raise TopicNotFoundError(topic) from None
        except Exception as e:
            if isinstance(e.__cause__, nats.js.errors.NoStreamResponseError):
                raise TopicNotFoundError(topic) from None
            raise
        return AppendResult(topic, partition, done[0].seq - 1)

    async def read(
        self, tp: TopicPartition, offset: int, limit: int, timeout_s: float = 0.5
    ) -> list[Record]:
        """Up to `limit` records from `offset`, through a short-lived consumer."""
        from tidings.engines.nats.reader import read_records

        return await read_records(self, tp, offset, limit, timeout_s)

    def consumer(self, config: ConsumerConfig) -> EngineConsumer:
        """A consumer of this engine's streams."""
        from tidings.engines.nats.consumer import NatsConsumer

        return NatsConsumer(self, config)

    # -- groups --------------------------------------------------------------------------

    async def read_group(self, group: str) -> GroupState | None:
        """A group's stored state."""
        kv = self._kv_groups
        try:
            entry = await self.call(
                f"read group {group!r}", kv.get(names.group_key(group), validate_keys=False)
            )
        except Exception as e:
            if _not_found(e):
                return None
            raise
        return GroupState.from_json(entry.value.decode()) if entry.value else None

    async def update_group(self, group: str, change: Callable[[GroupState], R]) -> R:
        """Read-modify-write a group's state with compare-and-set, retried on a race."""
        kv = self._kv_groups
        key = names.group_key(group)
        what = f"update group {group!r}"
        while True:
            try:
                entry = await self.call(what, kv.get(key, validate_keys=False))
                revision = entry.revision
                state = GroupState.from_json(entry.value.decode()) if entry.value else GroupState()
            except Exception as e:
                if not _not_found(e):
                    raise
                found = getattr(e.__cause__, "entry", None)
                revision = found.revision if found is not None else 0
                state = GroupState()
            result = change(state)
            try:
                if state.forgotten:
                    if revision:
                        await self.call(what, kv.delete(key, last=revision, validate_keys=False))
                else:
                    data = state.to_json().encode()
                    await self.call(what, kv.update(key, data, last=revision, validate_keys=False))
            except Exception as e:
                if _wrong_last(e):
                    continue  # another member changed the group first: apply again
                raise
            return result

    async def list_groups(self) -> list[str]:
        """Every group with stored state."""
        groups = []
        for key in await self._bucket_keys(names.GROUPS_BUCKET, "list groups"):
            try:
                await self.call(
                    f"read group {key!r}", self._kv_groups.get(key, validate_keys=False)
                )
            except Exception as e:
                if _not_found(e):
                    continue  # deleted: only its marker is left
                raise
            groups.append(names.unescape(key))
        return sorted(groups)

    async def _bucket_keys(self, bucket: str, what: str) -> list[str]:
        """The keys of a KV bucket (deleted ones too), from one stream-info request:
        kv.keys() runs a watcher that can end before the server sent every key."""
        info = await self.call(what, self.js.stream_info(f"KV_{bucket}", subjects_filter=">"))
        prefix = f"$KV.{bucket}."
        return [subject.removeprefix(prefix) for subject in info.state.subjects or {}]

    async def describe_group(self, group: str) -> GroupDescription:
        """Members, assignment and lag."""
        specs = await self.refresh_topics()
        state = await self.update_group(
            group, coordinator.administered(group, lambda state: state, specs)
        )
        extents = {
            topic: await self.partition_states(specs[topic])
            for topic in sorted(state.known_topics() & set(specs))
        }
        return coordinator.describe(group, state, extents)

    async def delete_group(self, group: str) -> None:
        """Delete an empty group and its committed offsets."""

        def forget(state: GroupState) -> None:
            coordinator.require_empty(group, state, "delete")
            state.offsets.clear()

        await self.update_group(group, coordinator.administered(group, forget, self._specs))

    async def set_group_offsets(self, group: str, offsets: dict[TopicPartition, int]) -> None:
        """Overwrite committed offsets of an empty group."""

        def change(state: GroupState) -> None:
            coordinator.set_offsets(state, group, offsets)

        await self.update_group(
            group, coordinator.administered(group, change, self._specs, must_exist=False)
        )

    @property
    def _kv_groups(self) -> KeyValue:
        if self._closed or self._groups is None:
            raise ClosedError(f"the engine at {self.url} is closed; connect again")
        return self._groups

    async def maintain(self) -> None:
        """Nothing to do: the server applies each stream's age and size limits itself."""
        self.nc  # noqa: B018 - a closed engine refuses, as every engine does

    # -- queues --------------------------------------------------------------------------

    def share_consumer(self, config: ShareConfig) -> EngineShareConsumer:
        """A competing consumer of a share group: durable pull consumers, one per partition."""
        from tidings.engines.nats.queue import NatsShareConsumer

        return NatsShareConsumer(self, config)

    async def queue_depth(self, group: str, topic: str) -> list[QueueDepth]:
        """Pending and acknowledgement-pending messages of the group's consumers."""
        from tidings.engines.nats.queue import queue_depth

        return await queue_depth(self, group, await self.topic(topic, fresh=True))

    async def list_share_groups(self) -> list[str]:
        """Every share group with a durable consumer on some partition."""
        return sorted({group for group, _ in await self.list_queues()})

    async def list_queues(self) -> list[tuple[str, str]]:
        """Every (share group, topic) pair with durable consumers."""
        from tidings.engines.nats.queue import list_queues

        return await list_queues(self)

    async def delete_share_group(self, group: str) -> None:
        """Delete the group's durable consumers (the records stay in the streams)."""
        from tidings.engines.nats.queue import delete_share_group

        await delete_share_group(self, group)

    async def queue_peek(self, config: ShareConfig, max_records: int) -> list[Record]:
        """Records not yet delivered to the group, from its delivered position on."""
        from tidings.engines.nats.queue import peek

        return await peek(self, config, await self.topic(config.topic, fresh=True), max_records)

    async def queue_purge(self, config: ShareConfig) -> int:
        """Take and accept every record available to the group now; how many."""
        from tidings.engines.nats.queue import purge

        await self.topic(config.topic, fresh=True)
        return await purge(self, config)

    async def queue_dead_letters(self, config: ShareConfig) -> int:
        """Records in the dead-letter topic not redriven yet."""
        from tidings.engines.nats.queue import dead_letters

        return await dead_letters(self, config)

    async def queue_redrive(self, config: ShareConfig, max_records: int | None) -> int:
        """Copy dead letters back to the queue's topic, each once; how many."""
        dead_letters = redrive.dead_letter_topic(config)
        spec = await self.topic(config.topic, fresh=True)
        await self.topic(dead_letters, fresh=True)
        return await redrive.redrive(
            self, config, spec.partitions, max_records, max_deliveries=1 << 20, wait_s=0.05
        )


def _not_found(e: BaseException) -> bool:
    cause = e.__cause__ if e.__cause__ is not None else e
    return isinstance(cause, nats.js.errors.NotFoundError) or (
        isinstance(cause, nats.js.errors.APIError) and cause.code == 404
    )


def _wrong_last(e: BaseException) -> bool:
    cause = e.__cause__ if e.__cause__ is not None else e
    return isinstance(cause, nats.js.errors.KeyWrongLastSequenceError) or (
        isinstance(cause, nats.js.errors.APIError) and cause.err_code in (10071, 10164)
    )
