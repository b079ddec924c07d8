"""The broker-wide budget of request bytes being read and held (Kafka's
queued.max.request.bytes, KIP-72).

A connection reserves a frame's size before it reads the frame's body, and gives it back
once the request has been handled, so all connections together never hold more request
bytes than the budget, however many send large frames at once. While the budget is
short, connections wait their turn in the order they asked: a large frame is never
starved by a stream of small ones. Taking bytes the budget has is one comparison and one
subtraction; only a connection that has to wait makes a future.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import deque


class RequestBudget:
    """Bytes of requests that all connections together may hold at once."""

    __slots__ = ("_waiters", "available", "capacity")

    def __init__(self, capacity: int) -> None:
        self.capacity = capacity
        """The whole budget: a frame larger than this can never be read."""
        self.available = capacity
        """Bytes not reserved now."""
        self._waiters: deque[tuple[int, asyncio.Future[None]]] = deque()
        """Reservations waiting for bytes, first asked first served."""

    async def reserve(self, size: int) -> None:
        """Take `size` bytes of the budget, waiting behind earlier requests while it is short."""
        if not self._waiters and size <= self.available:
            self.available -= size
            return
        if size > self.capacity:
            raise ValueError(
                f"a reservation of {size} bytes can never fit a budget of {self.capacity}"
            )
        waiter = asyncio.get_running_loop().create_future()
        self._waiters.append((size, waiter))
        try:
            await waiter
        except asyncio.CancelledError:
            if not waiter.cancelled():
                self.release(size)  # granted just as it was cancelled: give it back
            else:
                with contextlib.suppress(ValueError):  # unless a release dropped it
                    self._waiters.remove((size, waiter))
                self._grant()  # those behind it may fit now
            raise

    def release(self, size: int) -> None:
        """Give back `size` bytes reserved before; waiters they satisfy go on, in order."""
        self.available += size
        if self._waiters:
            self._grant()

    def _grant(self) -> None:
        waiters = self._waiters
        while waiters:
            size, waiter = waiters[0]
            if waiter.cancelled():  # its task has not run its cleanup yet
                waiters.popleft()
                continue
            if size > self.available:
                return
            waiters.popleft()
            self.available -= size
            waiter.set_result(None)
