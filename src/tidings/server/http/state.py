"""What the server keeps for its clients between requests: group consumers and queues.

HTTP is request by request, but a group member and a queue's locked jobs live longer. The
server opens one consumer per (group, topic) and one queue per (topic, group) on first use,
keeps them while they are used and closes them after `idle_s` without a request (a queue
also waits for the locks it handed out to end), and all of them when the app stops.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Hashable
from dataclasses import dataclass, field
from typing import Annotated, Generic, TypeVar

from fastapi import Depends, Request

from tidings.api.bus import AsyncBus
from tidings.api.consumer import AsyncConsumer
from tidings.api.producer import AsyncProducer
from tidings.server.http.errors import HttpError
from tidings.server.http.jobs import HeldQueue

K = TypeVar("K", bound=Hashable)
T = TypeVar("T")
R = TypeVar("R")

SLICE_S = 0.25
"""Longest single wait of a long poll or a tail, so a stopping server is noticed quickly."""


@dataclass
class Held(Generic[T]):
    """One object held for clients, with the options it was opened with."""

    item: T
    options: dict[str, object]
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    """Taken for each use that must not interleave (a fetch, a receive, a commit)."""
    users: int = 0
    last_used: float = field(default_factory=time.monotonic)


class Holder(Generic[K, T]):
    """Objects opened for clients, one per key, closed when idle and when the app stops."""

    def __init__(
        self,
        what: str,
        close: Callable[[T], Awaitable[None]],
        idle_s: float,
        busy: Callable[[T], bool] = lambda _: False,
    ) -> None:
        self._what = what
        self._close = close
        self._idle_s = idle_s
        self._busy = busy
        self._held: dict[K, Held[T]] = {}
        self._opening = asyncio.Lock()

    def get(self, key: K) -> Held[T] | None:
        """The object held for `key`, if open, marked as used now."""
        held = self._held.get(key)
        if held is not None:
            held.last_used = time.monotonic()
        return held

    @contextlib.asynccontextmanager
    async def use(
        self, key: K, options: dict[str, object], open_item: Callable[[], Awaitable[T]]
    ) -> AsyncIterator[Held[T]]:
        """The object for `key`, opened with `options` if none is; kept open while in use."""
        async with self._opening:  # two first requests for a key open one object
            held = self._held.get(key)
            if held is None:
                held = self._held[key] = Held(await open_item(), options)
        if held.options != options:
            raise HttpError(
                409,
                "options_conflict",
                f"the {self._what} {key} is open on this server with {held.options}, not "
                f"{options}; use the same options, or change them after {self._idle_s:g} s "
                f"without requests, when it closes",
            )
        held.users += 1
        try:
            yield held
        finally:
            held.users -= 1
            held.last_used = time.monotonic()

    async def reap(self) -> None:
        """Close what no request has used for `idle_s` and is not busy."""
        now = time.monotonic()
        idle = [
            key
            for key, held in self._held.items()
            if not held.users and now - held.last_used >= self._idle_s and not self._busy(held.item)
        ]
        await self.discard(idle)

    async def discard(self, keys: list[K]) -> None:
        """Close the objects of `keys` (after the use under way, if any)."""
        for key in keys:
            held = self._held.pop(key, None)
            if held is not None:
                async with held.lock:
                    await self._close(held.item)

    def held_keys(self) -> list[K]:
        """The keys of every object held now."""
        return list(self._held)

    async def close(self) -> None:
        """Close everything held."""
        await self.discard(self.held_keys())


class HttpState:
    """The bus and everything the server holds for clients of one app."""

    def __init__(self, bus: AsyncBus, idle_s: float) -> None:
        self.bus = bus
        self.idle_s = idle_s
        self.consumers: Holder[tuple[str, str], AsyncConsumer] = Holder(
            "consumer of (group, topic)", lambda c: c.close(), idle_s
        )
        self.queues: Holder[tuple[str, str], HeldQueue] = Holder(
            "queue of (topic, group)", lambda q: q.queue.close(), idle_s, HeldQueue.busy
        )
        self.stopping = asyncio.Event()
        """Set when the server stops: long polls return and tails end."""
        self._producer: AsyncProducer | None = None

    def producer(self) -> AsyncProducer:
        """The producer of every produce request (made on first use, on the loop)."""
        if self._producer is None:
            # linger 0: a request waits for no timer, yet concurrent ones share a commit
            self._producer = self.bus.producer(linger_ms=0)
        return self._producer

    async def discard(self, *, topic: str | None = None, group: str | None = None) -> None:
        """Close what is held for `topic` or `group` (before deleting or resetting them)."""
        consumers = self.consumers.held_keys()
        await self.consumers.discard(
            [(g, t) for g, t in consumers if group in (None, g) and topic in (None, t)]
        )
        queues = self.queues.held_keys()
        await self.queues.discard(
            [(t, g) for t, g in queues if group in (None, g) and topic in (None, t)]
        )

    async def reap_forever(self) -> None:
        """Close idle consumers and queues, every so often, until cancelled."""
        while True:
            await asyncio.sleep(min(self.idle_s / 2, 5.0))
            await self.consumers.reap()
            await self.queues.reap()

    async def close(self) -> None:
        """Stop long polls and tails; close every consumer and queue, and the producer."""
        self.stopping.set()
        await self.consumers.close()
        await self.queues.close()
        if self._producer is not None:
            await self._producer.close()

    async def long_poll(
        self, fetch: Callable[[float], Awaitable[list[R]]], timeout_ms: int
    ) -> list[R]:
        """Call `fetch(wait_ms)` until it returns something, `timeout_ms` passes or we stop."""
        deadline = time.monotonic() + timeout_ms / 1000
        while True:
            remaining = deadline - time.monotonic()
            items = await fetch(max(0.0, min(remaining, SLICE_S)) * 1000)
            if items or remaining <= SLICE_S or self.stopping.is_set():
                return items


def http_state(request: Request) -> HttpState:
    """The state of the app serving `request` (a FastAPI dependency)."""
    state: HttpState = request.app.state.tidings
    return state


State = Annotated[HttpState, Depends(http_state)]
"""The app's state, as a parameter of an endpoint."""
