"""Request-reply over topics: correlation id and reply-to travel in headers.

A requester owns one reply topic (`_replies.<uuid>`, created on first use and deleted on
close) read through an ephemeral subscription. Each request waits for the reply carrying
its correlation id; a reply that comes after its request gave up is dropped and counted.
"""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from typing import TYPE_CHECKING, Any

from tidings.api.consumer import AsyncConsumer
from tidings.core.codecs import encode
from tidings.core.errors import TidingsError
from tidings.core.records import HeadersInput, Record, normalize_headers

if TYPE_CHECKING:
    from tidings.api.bus import AsyncBus

CORRELATION_ID = "tidings.correlation-id"
REPLY_TO = "tidings.reply-to"
REPLY_PREFIX = "_replies."
POLL_MS = 50


class RequestTimeoutError(TidingsError, TimeoutError):
    """No reply to a request came in time."""

    def __init__(self, topic: str, timeout: float) -> None:
        super().__init__(
            f"no reply to the request on topic {topic!r} within {timeout}s; check that a "
            f"subscriber serves {topic!r} (and is running), or give a longer timeout="
        )
        self.topic = topic
        self.timeout = timeout


class Requester:
    """Sends requests and matches their replies, on one reply topic of its own."""

    def __init__(self, bus: AsyncBus) -> None:
        self.bus = bus
        self.reply_topic = f"{REPLY_PREFIX}{uuid.uuid4().hex}"
        self.late_replies = 0
        """Replies that came after their request timed out (or were never asked for)."""
        self._pending: dict[str, asyncio.Future[Record]] = {}
        self._consumer: AsyncConsumer | None = None
        self._listener: asyncio.Task[None] | None = None
        self._ready = asyncio.Lock()
        self._closed = False

    @property
    def pending(self) -> int:
        """Requests waiting for their reply now."""
        return len(self._pending)

    async def request(
        self,
        topic: str,
        value: Any,
        *,
        timeout: float = 5.0,
        key: bytes | None = None,
        headers: HeadersInput = None,
    ) -> Record:
        """Publish `value` to `topic` and return the reply record, or raise on timeout."""
        await self._start()
        correlation_id = uuid.uuid4().hex
        reply: asyncio.Future[Record] = asyncio.get_running_loop().create_future()
        self._pending[correlation_id] = reply
        hdrs = (
            *normalize_headers(headers),
            (CORRELATION_ID, correlation_id.encode()),
            (REPLY_TO, self.reply_topic.encode()),
        )
        try:
            async with asyncio.timeout(timeout):
                await self.bus.publish(topic, encode(value), key=key, headers=hdrs)
                return await reply
        except TimeoutError:
            raise RequestTimeoutError(topic, timeout) from None
        finally:
            self._pending.pop(correlation_id, None)  # never keep a future past its request

    async def _start(self) -> None:
        async with self._ready:
            if self._closed:
                raise TidingsError("the requester is closed; make a new one")
            if self._consumer is None:
                await self.bus.create_topic(self.reply_topic, exist_ok=True)
                # an ephemeral subscription fixes its position now: no reply is missed
                self._consumer = await self.bus.subscribe(self.reply_topic).start()
                self._listener = asyncio.create_task(self._listen(self._consumer))

    async def _listen(self, consumer: AsyncConsumer) -> None:
        while not self._closed:
            for record in await consumer.poll(timeout_ms=POLL_MS):
                raw = record.header(CORRELATION_ID)
                reply = self._pending.pop(raw.decode(errors="replace"), None) if raw else None
                if reply is None or reply.done():
                    self.late_replies += 1
                else:
                    reply.set_result(record)

    async def close(self) -> None:
        """Stop listening and delete the reply topic."""
        if self._closed:
            return
        self._closed = True
        if self._listener is not None:
            await asyncio.gather(self._listener, return_exceptions=True)
        if self._consumer is not None:
            await self._consumer.close()
            with contextlib.suppress(TidingsError):  # already gone: nothing left behind
                await self.bus.delete_topic(self.reply_topic)
