"""App: handlers declared with decorators, fed by groups, queues or subscriptions.

Each subscriber runs as one task on the bus's loop. A handler's parameter is decoded
from the record by its type hint; its return value is published to `publishes=` and, for
a request, to the request's reply-to topic. Offsets are committed and jobs accepted only
after the handler finished, so delivery is at least once.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import logging
import signal
import threading
import typing
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal, TypeVar

from tidings.api.bus import AsyncBus, Bus
from tidings.api.consumer import AsyncConsumer
from tidings.api.queue import AsyncQueue, Job
from tidings.api.rpc import CORRELATION_ID, REPLY_TO, Requester
from tidings.core.codecs import DecodeError, Decoder, decoder_for, encode
from tidings.core.errors import AcknowledgeError, ConfigurationError
from tidings.core.records import DLQ_SUFFIX, HeadersInput, Record, TopicPartition
from tidings.core.subjects import compile_pattern, is_pattern

log = logging.getLogger("tidings.app")
F = TypeVar("F", bound=Callable[..., Any])
OnError = Literal["retry", "skip", "dead_letter", "stop"]
AfterRetries = Literal["dead_letter", "stop"]
POLL_MS = 100
MAX_BACKOFF_MS = 60_000


@dataclass
class Subscriber:
    """One handler and where its records come from."""

    handler: Callable[..., Any]
    topics: tuple[str, ...]
    decode: Decoder
    group: str | None = None
    queue: str | None = None
    publishes: str | None = None
    from_beginning: bool = False
    max_deliveries: int = 5
    dead_letter_topic: str | None = None
    lock_timeout_ms: int = 30_000
    on_error: OnError = "retry"
    max_retries: int = 3
    after_retries: AfterRetries = "dead_letter"
    retry_backoff_ms: int = 100
    max_backoff_ms: int = MAX_BACKOFF_MS

    @property
    def name(self) -> str:
        """The handler's name, for logs and errors."""
        return getattr(self.handler, "__qualname__", repr(self.handler))

    def backoff_ms(self, attempt: int) -> int:
        """Exponential backoff before retry number `attempt` (1-based), capped."""
        return int(min(self.retry_backoff_ms * 2 ** (attempt - 1), self.max_backoff_ms))


class _Stop(Exception):
    """A stream subscriber's policy says: stop the App."""


class _Abandon(Exception):
    """The App stops while a record waits for a retry: leave it uncommitted for later."""


class App:
    """Handlers for records, declared with `@app.subscriber(...)`, run by `app.run()`."""

    def __init__(self, bus: AsyncBus | Bus) -> None:
        self._sync = bus if isinstance(bus, Bus) else None
        self.bus: AsyncBus = bus.aio if isinstance(bus, Bus) else bus
        self.subscribers: list[Subscriber] = []
        self._tasks: list[asyncio.Task[None]] = []
        self._stopping: asyncio.Event | None = None
        self._requester: Requester | None = None
        self.failure: BaseException | None = None
        """The error that stopped the App (a handler under on_error='stop'), if any."""

    # -- declaring -----------------------------------------------------------------------

    def subscriber(
        self,
        *topics: str,
        group: str | None = None,
        queue: str | None = None,
        publishes: str | None = None,
        from_beginning: bool = False,
        max_deliveries: int = 5,
        dead_letter_topic: str | None = None,
        lock_timeout_ms: int = 30_000,
        on_error: OnError = "retry",
        max_retries: int = 3,
        after_retries: AfterRetries = "dead_letter",
        retry_backoff_ms: int = 100,
        max_backoff_ms: int = MAX_BACKOFF_MS,
    ) -> Callable[[F], F]:
        """Declare a handler of `topics`: in a consumer `group`, a `queue`, or ephemeral."""
        if not topics:
            raise ConfigurationError("a subscriber needs a topic or a pattern, e.g. 'orders.*'")
        if group is not None and queue is not None:
            raise ConfigurationError(
                "give group= (a stream, every record in order) or queue= (competing "
                "workers, one job at a time), not both"
            )
        if queue is not None and (len(topics) != 1 or is_pattern(topics[0])):
            raise ConfigurationError(
                f"a queue reads one topic, not {', '.join(topics)}; declare one subscriber "
                f"per topic"
            )
        if on_error not in ("retry", "skip", "dead_letter", "stop"):
            raise ConfigurationError(
                f"on_error must be 'retry', 'skip', 'dead_letter' or 'stop', not {on_error!r}"
            )
        if after_retries not in ("dead_letter", "stop"):
            raise ConfigurationError(
                f"after_retries must be 'dead_letter' or 'stop', not {after_retries!r}"
            )
        dead_letters = on_error == "dead_letter" or (
            on_error == "retry" and after_retries == "dead_letter"
        )
        if queue is None and dead_letters:
            _check_dead_letter_topic(topics, dead_letter_topic)
        if queue is not None and dead_letter_topic is None:
            dead_letter_topic = topics[0] + DLQ_SUFFIX

        def register(handler: F) -> F:
            self.subscribers.append(
                Subscriber(
                    handler,
                    topics,
                    _decoder_of(handler),
                    group=group,
                    queue=queue,
                    publishes=publishes,
                    from_beginning=from_beginning,
                    max_deliveries=max_deliveries,
                    dead_letter_topic=dead_letter_topic,
                    lock_timeout_ms=lock_timeout_ms,
                    on_error=on_error,
                    max_retries=max_retries,
                    after_retries=after_retries,
                    retry_backoff_ms=retry_backoff_ms,
                    max_backoff_ms=max_backoff_ms,
                )
            )
            return handler

        return register

    # -- running -------------------------------------------------------------------------

    async def start(self) -> None:
        """Start every subscriber on the running loop; returns once they listen."""
        if self._tasks:
            return
        self.failure = None
        self._stopping = asyncio.Event()
        for sub in self.subscribers:
            if sub.queue is not None:
                queue = self.bus.queue(
                    sub.topics[0],
                    group=sub.queue,
                    max_deliveries=sub.max_deliveries,
                    dead_letter_topic=sub.dead_letter_topic,
                    lock_timeout_ms=sub.lock_timeout_ms,
                )
                await queue.start()
                self._tasks.append(asyncio.create_task(self._serve_queue(sub, queue)))
            else:
                if sub.group is not None:
                    consumer = self.bus.consumer(
                        *sub.topics,
                        group=sub.group,
                        from_beginning=sub.from_beginning,
                        auto_commit=False,
                    )
                else:
                    consumer = self.bus.subscribe(*sub.topics)
                await consumer.start()
                self._tasks.append(asyncio.create_task(self._serve_stream(sub, consumer)))

    async def stop(self) -> None:
        """Stop gracefully: finish in-flight handlers, commit or ack, leave; idempotent."""
        if self._stopping is not None:
            self._stopping.set()
        tasks, self._tasks = self._tasks, []
        await asyncio.gather(*tasks, return_exceptions=True)
        if self._requester is not None:
            requester, self._requester = self._requester, None
            await requester.close()

    async def wait(self) -> None:
        """Wait until the App stops; raise the error that stopped it, if one did."""
        if self._stopping is None:
            raise ConfigurationError("the App is not started; await app.start() first")
        await self._stopping.wait()
        await self.stop()
        if self.failure is not None:
            raise self.failure

    async def serve(self) -> None:
        """Start, run until SIGINT/SIGTERM (or a stopping error), then stop gracefully."""
        await self.start()
        loop = asyncio.get_running_loop()
        installed = []
        if threading.current_thread() is threading.main_thread():
            for sig in (signal.SIGINT, signal.SIGTERM):
                loop.add_signal_handler(sig, self._request_stop)
                installed.append(sig)
        try:
            await self.wait()
        finally:
            for sig in installed:
                loop.remove_signal_handler(sig)

    def run(self) -> None:
        """Serve until SIGINT/SIGTERM, then stop gracefully (needs a sync tidings.Bus)."""
        if self._sync is None:
            raise ConfigurationError(
                "app.run() blocks and needs a sync bus (tidings.connect()); with an "
                "AsyncBus, use `await app.serve()` (or app.start()/app.stop()) in your loop"
            )
        portal = self._sync._portal
        previous = {}

        def on_signal(signum: int, frame: object) -> None:
            portal.loop.call_soon_threadsafe(self._request_stop)

        for sig in (signal.SIGINT, signal.SIGTERM):
            previous[sig] = signal.signal(sig, on_signal)
        try:
            portal.call(self._start_and_wait())
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)

    async def _start_and_wait(self) -> None:
        await self.start()
        await self.wait()

    def _request_stop(self) -> None:
        if self._stopping is not None:
            self._stopping.set()

    # -- request-reply -------------------------------------------------------------------

    async def request(
        self,
        topic: str,
        value: Any,
        *,
        timeout: float = 5.0,
        key: bytes | None = None,
        headers: HeadersInput = None,
    ) -> Record:
        """Publish `value` to `topic` and return the reply (RequestTimeoutError if none)."""
        if self._requester is None:
            self._requester = Requester(self.bus)
        return await self._requester.request(
            topic, value, timeout=timeout, key=key, headers=headers
        )

    @property
    def late_replies(self) -> int:
        """Replies that came after their request timed out, dropped."""
        return 0 if self._requester is None else self._requester.late_replies

    # -- the subscriber loops ------------------------------------------------------------

    @property
    def _running(self) -> bool:
        return self._stopping is not None and not self._stopping.is_set()

    async def _serve_stream(self, sub: Subscriber, consumer: AsyncConsumer) -> None:
        try:
            while self._running:
                for record in await consumer.poll(timeout_ms=POLL_MS):
                    await self._handle_stream(sub, record)
                    if sub.group is not None:
                        tp = TopicPartition(record.topic, record.partition)
                        await consumer.commit({tp: record.offset + 1})
                    if not self._running:
                        break  # the rest of the batch is not committed: read again later
        except _Abandon:
            pass
        except _Stop as e:
            self._fail(e.__cause__ or e)
        except Exception as e:
            log.exception("subscriber %s failed", sub.name)
            self._fail(e)
        finally:
            await consumer.close()

    async def _handle_stream(self, sub: Subscriber, record: Record) -> None:
        attempt = 0
        while True:
            try:
                await self._handle(sub, record)
                return
            except Exception as e:
                retryable = sub.on_error == "retry" and not isinstance(e, DecodeError)
                if retryable and attempt < sub.max_retries:
                    if not self._running:
                        raise _Abandon from e
                    attempt += 1
                    log.warning("%s failed on %s, retry %d: %r", sub.name, _at(record), attempt, e)
                    if await self._stopped_within(sub.backoff_ms(attempt)):
                        raise _Abandon from e
                    continue
                policy = sub.after_retries if sub.on_error == "retry" else sub.on_error
                if policy == "skip":
                    log.warning("%s failed on %s, skipped: %r", sub.name, _at(record), e)
                    return
                if policy == "stop":
                    raise _Stop(f"{sub.name} failed on {_at(record)}") from e
                await self._dead_letter(sub, record, e)
                return

    async def _dead_letter(self, sub: Subscriber, record: Record, error: Exception) -> None:
        topic = sub.dead_letter_topic or record.topic + DLQ_SUFFIX
        reason = f"{type(error).__name__}: {error}"
        facts = {
            "topic": record.topic,
            "partition": record.partition,
            "offset": record.offset,
            "reason": reason,
        }
        headers = (
            *record.headers,
            *((f"tidings.dlq.{k}", str(v).encode()) for k, v in facts.items()),
        )
        await self.bus.create_topic(topic, exist_ok=True)
        await self.bus.publish(topic, record.value, key=record.key, headers=headers)
        log.warning(
            "%s failed on %s, dead-lettered to %r: %s", sub.name, _at(record), topic, reason
        )

    async def _serve_queue(self, sub: Subscriber, queue: AsyncQueue) -> None:
        try:
            while self._running:
                for job in await queue.receive(max_records=1, timeout_ms=POLL_MS):
                    await self._handle_job(sub, job)
        except Exception as e:
            log.exception("subscriber %s failed", sub.name)
            self._fail(e)
        finally:
            await queue.close()

    async def _handle_job(self, sub: Subscriber, job: Job) -> None:
        try:
            await self._try_job(sub, job)
        except AcknowledgeError as e:  # the lock expired meanwhile: the job comes back
            log.warning("%s could not settle %s: %s", sub.name, _at(job.record), e)

    async def _try_job(self, sub: Subscriber, job: Job) -> None:
        try:
            await self._handle(sub, job.record)
        except DecodeError as e:
            job.reject(reason=f"DecodeError: {e}")
        except Exception as e:
            delay = sub.backoff_ms(job.deliveries)
            log.warning(
                "%s failed on %s, released for %d ms: %r", sub.name, _at(job.record), delay, e
            )
            job.release(delay_ms=delay)
        else:
            job.ack()

    async def _handle(self, sub: Subscriber, record: Record) -> None:
        """Decode, run the handler, publish its result (to `publishes=` and reply-to)."""
        value = sub.decode(record)
        if inspect.iscoroutinefunction(sub.handler):
            result = await sub.handler(value)
        else:
            result = await asyncio.to_thread(sub.handler, value)
            if inspect.isawaitable(result):
                result = await result
        reply_to = record.header(REPLY_TO)
        if sub.publishes is None and reply_to is None:
            return
        payload = encode(result)
        if sub.publishes is not None:
            await self.bus.publish(sub.publishes, payload, key=record.key)
        if reply_to is not None:
            correlation = record.header(CORRELATION_ID) or b""
            await self.bus.publish(
                reply_to.decode(),
                payload,
                key=record.key,
                headers=((CORRELATION_ID, correlation),),
            )

    async def _stopped_within(self, ms: int) -> bool:
        """Wait `ms` milliseconds, cut short by a stop; whether the App is stopping."""
        assert self._stopping is not None
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._stopping.wait(), ms / 1000)
        return not self._running

    def _fail(self, error: BaseException) -> None:
        if self.failure is None:
            self.failure = error
        self._request_stop()


def _decoder_of(handler: Callable[..., Any]) -> Decoder:
    """The decoder for the handler's one parameter, by its type hint."""
    params = list(inspect.signature(handler).parameters.values())
    if len(params) != 1:
        raise ConfigurationError(
            f"handler {handler.__qualname__} takes {len(params)} parameters; a handler takes "
            f"exactly one, the message (annotated with the type to decode it into)"
        )
    try:
        hints = typing.get_type_hints(handler)
    except NameError as e:
        raise ConfigurationError(
            f"cannot resolve the type hints of {handler.__qualname__}: {e}; define the "
            f"annotated types at module level"
        ) from e
    return decoder_for(hints.get(params[0].name, Record))


def _check_dead_letter_topic(topics: tuple[str, ...], dead_letter_topic: str | None) -> None:
    """Refuse dead letters that the subscriber itself would read again."""
    for pattern in topics:
        if not is_pattern(pattern):
            continue
        matches = compile_pattern(pattern)
        if dead_letter_topic is not None and matches(dead_letter_topic):
            raise ConfigurationError(
                f"dead_letter_topic {dead_letter_topic!r} matches the pattern {pattern!r}, so "
                f"the subscriber would read its own dead letters; choose a topic it does not match"
            )
        # '*' patterns never match '<topic>.dlq' (one segment more); '>' and regexes may
        if dead_letter_topic is None and (pattern.startswith("^") or ">" in pattern):
            raise ConfigurationError(
                f"the pattern {pattern!r} may match '<topic>{DLQ_SUFFIX}', the default "
                f"dead-letter topic; give dead_letter_topic= (a topic it does not match), "
                f"or on_error='skip' or 'stop'"
            )


def _at(record: Record) -> str:
    return f"{record.topic}[{record.partition}]@{record.offset}"
