"""Sync methods made from the async core's, so each signature and docstring exists once.

A sync face (Bus, Consumer, Queue, Producer) drives its async core on a portal's loop.
Each of its methods that only does that is one line:

    class Bus(SyncFace[AsyncBus]):
        publish_many = blocking(AsyncBus.publish_many)

mypy sees the core's parameters and the awaited return type on the sync face, and
help() and inspect.signature show the core's signature and docstring. Methods that differ
in kind (an iterator, a poll on the caller's thread, a close that stops the loop) stay
written by hand; `mirrors` has mypy check that they take what the core's method takes.
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Awaitable, Callable, Coroutine
from typing import (
    Any,
    Concatenate,
    ParamSpec,
    Protocol,
    Self,
    TypeVar,
    cast,
    overload,
    runtime_checkable,
)

from tidings.api.portal import Portal, SyncFace

P = ParamSpec("P")
Q = ParamSpec("Q")
R = TypeVar("R")
R_co = TypeVar("R_co", covariant=True)
C = TypeVar("C")
A = TypeVar("A")
F = TypeVar("F")
T = TypeVar("T")
T_co = TypeVar("T_co", covariant=True)


class Resolving(Protocol[R_co]):
    """A future that can be waited for from any thread (RecordFuture)."""

    def result(self) -> R_co:
        """Wait for the value (or raise the error)."""
        ...


@runtime_checkable
class Startable(Protocol):
    """A core object that must be started before use (a consumer joins its group)."""

    def start(self) -> Awaitable[object]:
        """Start it."""
        ...


def blocking(
    method: Callable[Concatenate[C, P], Coroutine[Any, Any, R]],
    *,
    here: Callable[Concatenate[C, P], Resolving[R]] | None = None,
) -> Callable[Concatenate[SyncFace[C], P], R]:
    """The sync face of the core's coroutine `method`: run it on the loop and wait.

    With `here`, a thread-safe plain method of the core that takes the same arguments and
    returns a future, the call runs on the caller's thread and waits for that future
    instead: no round trip through the loop, which a hot path such as publish feels.
    """
    if here is None:

        def call(face: SyncFace[C], /, *args: P.args, **kwargs: P.kwargs) -> R:
            try:
                return face._portal.call(method(face.aio, *args, **kwargs))
            except TypeError:
                _refuse_misfit(call, method, args, kwargs)
                raise

        return _like(call, method)

    def call_here(face: SyncFace[C], /, *args: P.args, **kwargs: P.kwargs) -> R:
        face._portal.check_caller()
        try:
            return here(face.aio, *args, **kwargs).result()
        except TypeError:
            _refuse_misfit(call_here, method, args, kwargs)
            raise

    return _like(call_here, method)


def on_loop(method: Callable[Concatenate[C, P], R]) -> Callable[Concatenate[SyncFace[C], P], R]:
    """The sync face of the core's plain `method` that must run on the loop (not thread-safe)."""

    def call(face: SyncFace[C], /, *args: P.args, **kwargs: P.kwargs) -> R:
        try:
            return face._portal.run(lambda: method(face.aio, *args, **kwargs))
        except TypeError:
            _refuse_misfit(call, method, args, kwargs)
            raise

    return _like(call, method)


def passthrough(
    method: Callable[Concatenate[C, P], R],
) -> Callable[Concatenate[SyncFace[C], P], R]:
    """The sync face of the core's plain `method` that is safe on the caller's thread."""

    def call(face: SyncFace[C], /, *args: P.args, **kwargs: P.kwargs) -> R:
        try:
            return method(face.aio, *args, **kwargs)
        except TypeError:
            _refuse_misfit(call, method, args, kwargs)
            raise

    return _like(call, method)


def opening(
    method: Callable[Concatenate[C, P], A], face_type: Callable[[A, Portal], F]
) -> Callable[Concatenate[SyncFace[C], P], F]:
    """The sync face of the core's factory `method`: make the object on the loop (it binds
    to it), start it if it starts, and return its sync face `face_type`."""

    def call(face: SyncFace[C], /, *args: P.args, **kwargs: P.kwargs) -> F:
        async def open_core() -> A:
            core = method(face.aio, *args, **kwargs)
            if isinstance(core, Startable):
                await core.start()
            return core

        try:
            core = face._portal.call(open_core())
        except TypeError:
            _refuse_misfit(call, method, args, kwargs)
            raise
        return face_type(core, face._portal)

    opened = _like(call, method)
    opened.__dict__["__signature__"] = inspect.signature(method).replace(
        return_annotation=face_type
    )
    return opened


class Reading(Protocol[C, T_co]):
    """What mypy sees of a property made by reading(): the core's type, on the face."""

    @overload
    def __get__(self, face: None, owner: type[Any]) -> Self: ...
    @overload
    def __get__(self, face: SyncFace[C], owner: type[Any]) -> T_co: ...


def reading(attribute: Callable[[C], T]) -> Reading[C, T]:
    """The sync face of the core's read-only property `attribute`, with its docstring."""
    getter = cast(property, attribute).fget  # mypy types a property on the class as its getter
    if getter is None:
        raise TypeError(f"{attribute!r} is not a readable property of the async core")
    read = property(lambda face: getter(face.aio), doc=getter.__doc__)
    return cast("Reading[C, T]", read)


def mirrors(
    method: Callable[Concatenate[Any, P], Coroutine[Any, Any, R]],
) -> Callable[[Callable[Concatenate[F, P], R]], Callable[Concatenate[F, P], R]]:
    """For a sync method written by hand: mypy checks that it takes the arguments of the
    core's coroutine `method` and returns what that awaits; it gets its docstring."""

    def adopt(function: Callable[Concatenate[F, P], R]) -> Callable[Concatenate[F, P], R]:
        function.__doc__ = method.__doc__
        return function

    return adopt


def _refuse_misfit(
    call: Callable[..., Any], method: Callable[..., Any], args: Any, kwargs: Any
) -> None:
    """If the arguments do not fit the core's `method`, raise the TypeError Python would
    raise for the sync method `call`: it names Bus.publish, not the core's method."""
    try:
        inspect.signature(method).bind(None, *args, **kwargs)
    except TypeError as misfit:
        raise TypeError(f"{call.__qualname__}() {misfit}") from None


def _like(call: Callable[Q, R], method: Callable[..., Any]) -> Callable[Q, R]:
    """`call` with the name, docstring and signature of the core's `method`."""
    return functools.update_wrapper(call, method)
