"""A background event loop that runs the async core for the sync face."""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import threading
from abc import ABC, abstractmethod
from collections.abc import Callable, Coroutine
from types import TracebackType
from typing import Any, Generic, Self, TypeVar

from tidings.core.errors import ClosedError

T = TypeVar("T")
C = TypeVar("C")

FINISH_TIMEOUT_S = 5.0
"""Longest a closing bus waits for cancelled background tasks to end."""


class Portal:
    """An event loop in a daemon thread; `call` runs a coroutine there and waits for it."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._run, name="tidings-loop", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        asyncio.set_event_loop(self.loop)
        self.loop.run_forever()

    def call(self, coro: Coroutine[Any, Any, T]) -> T:
        """Run `coro` on the portal's loop and return its result (or raise its error)."""
        try:
            self.check_caller()
        except BaseException:
            coro.close()
            raise
        future = asyncio.run_coroutine_threadsafe(coro, self.loop)
        try:
            return future.result()
        except BaseException:
            # Interrupted (Ctrl-C): stop the work too, so a poll cannot hand records to
            # nobody and have them committed on close.
            future.cancel()
            raise

    def run(self, fn: Callable[[], T]) -> T:
        """Run the plain function `fn` on the portal's loop (where the async core lives)."""

        async def call() -> T:
            return fn()

        return self.call(call())

    def check_caller(self) -> None:
        """Refuse a sync call that would wait forever: on a closed bus or on its own loop."""
        if self.loop.is_closed():
            raise ClosedError("the bus is closed; open a new one with tidings.connect()")
        if threading.current_thread() is self._thread:
            raise RuntimeError(
                "a sync tidings call was made on the bus's own event loop thread; "
                "use the async API (tidings.connect_async) inside async code"
            )

    def close(self) -> None:
        """Finish what is left on the loop (as asyncio.run does), stop it, join its thread."""
        if self.loop.is_closed():
            return
        if self.loop.is_running():
            with contextlib.suppress(Exception):  # what is left is being stopped anyway
                asyncio.run_coroutine_threadsafe(_finish_tasks(), self.loop).result()
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join()
        self.loop.close()


async def _finish_tasks() -> None:
    """Cancel the tasks still on the loop and let them end: background tasks of client
    libraries would otherwise be destroyed pending, each logging an error at exit."""
    current = asyncio.current_task()
    left = [t for t in asyncio.all_tasks() if t is not current]
    for task in left:
        task.cancel()
    if left:
        await asyncio.wait(left, timeout=FINISH_TIMEOUT_S)
    await asyncio.get_running_loop().shutdown_asyncgens()


class SyncFace(ABC, Generic[C]):
    """A sync face: the async core object it drives on the portal, closed by `with`."""

    def __init__(self, core: C, portal: Portal) -> None:
        self.aio = core
        """The async object behind this face, for use inside async code."""
        self._portal = portal

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        # methods made from the core's (see api/face.py) are named for this face, so
        # repr() and help() say Bus.publish, not AsyncBus.publish
        for name, value in vars(cls).items():
            if inspect.isfunction(value) and hasattr(value, "__wrapped__"):
                value.__qualname__ = f"{cls.__qualname__}.{name}"

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self, t: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    @abstractmethod
    def close(self) -> None:
        """Release what the core holds."""
