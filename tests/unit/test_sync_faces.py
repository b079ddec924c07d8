"""Sync methods made from async ones take the core's arguments and run where they say."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from typing import assert_type

import pytest

import tidings
from tidings.api.face import blocking, on_loop, opening, passthrough, reading
from tidings.api.portal import Portal, SyncFace


class _Core:
    """A small async core that notes the thread each of its methods runs on."""

    def __init__(self) -> None:
        self.threads: list[str] = []

    @property
    def name(self) -> str:
        """The core's name."""
        return "core"

    async def wait(self, value: int, *, twice: bool = False) -> int:
        """Double `value` when `twice`."""
        self.threads.append(threading.current_thread().name)
        return value * 2 if twice else value

    def here(self, value: int, *, twice: bool = False) -> _Done:
        """`wait` done on the caller's thread."""
        self.threads.append(threading.current_thread().name)
        return _Done(value * 2 if twice else value)

    def touch(self, label: str) -> str:
        """Note the thread."""
        self.threads.append(threading.current_thread().name)
        return label

    def child(self, label: str) -> _Core:
        """Another core."""
        self.threads.append(threading.current_thread().name)
        return _Core()


class _Done:
    def __init__(self, value: int) -> None:
        self.value = value

    def result(self) -> int:
        return self.value


class _Child(SyncFace[_Core]):
    def close(self) -> None:
        """Nothing to close: the parent face owns the portal."""


class _Face(SyncFace[_Core]):
    name = reading(_Core.name)
    wait = blocking(_Core.wait)
    wait_here = blocking(_Core.wait, here=_Core.here)
    touch_on_loop = on_loop(_Core.touch)
    touch_here = passthrough(_Core.touch)
    child = opening(_Core.child, _Child)

    def close(self) -> None:
        """Stop the loop."""
        self._portal.close()


@pytest.fixture
def face() -> Iterator[_Face]:
    """A face on its own portal."""
    with _Face(_Core(), Portal()) as f:
        yield f


def test_each_kind_of_sync_method_runs_where_it_says(face: _Face) -> None:
    caller, loop = threading.current_thread().name, "tidings-loop"
    assert assert_type(face.wait(2, twice=True), int) == 4
    assert assert_type(face.wait_here(3, twice=True), int) == 6
    assert assert_type(face.touch_on_loop("a"), str) == "a"
    assert assert_type(face.touch_here("b"), str) == "b"
    assert isinstance(assert_type(face.child("c"), _Child), _Child)
    assert assert_type(face.name, str) == "core"
    assert face.aio.threads == [loop, caller, loop, caller, loop]


def test_a_closed_face_refuses_each_kind_of_call(face: _Face) -> None:
    face.close()
    for call in (lambda: face.wait(1), lambda: face.wait_here(1), lambda: face.child("c")):
        with pytest.raises(tidings.ClosedError, match="open a new one"):
            call()
    assert face.aio.threads == []


def test_a_type_error_raised_inside_the_core_passes_unchanged(face: _Face) -> None:
    for call in (face.wait, face.wait_here):
        with pytest.raises(TypeError, match="unsupported operand"):
            call(None, twice=True)  # type: ignore[arg-type]
