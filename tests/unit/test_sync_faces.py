"""The sync faces take what their async cores take, say what they say, and run where told.

The faces' behaviour on every engine is the conformance suite's; here is what a user sees
of their shape: help() and inspect.signature show the core's parameters and docstring,
a misspelt argument is named as the sync method's, and mypy sees the core's types
(the `assert_type` lines are checked by mypy, which runs on the tests).
"""

from __future__ import annotations

import inspect
import pydoc
import threading
from collections.abc import Iterator
from typing import Any, assert_type

import pytest

import tidings
import tidings.eventsourcing
from tidings import Record, RecordMetadata, TopicPartition
from tidings.api.bus import Producer
from tidings.api.face import blocking, on_loop, opening, passthrough, reading
from tidings.api.portal import Portal, SyncFace
from tidings.eventsourcing import AppendResult, AsyncEventStore, Event, EventStore, RecordedEvent

FACES: list[tuple[type[SyncFace[Any]], type, set[str]]] = [
    # the face, its core, and the core's public names the face leaves out, with why:
    # start: a face is started when it is made; enqueue, accept, submit, partition: the
    # thread-safe plain methods the faces and Job are built on; the producer's send (its
    # sender kernel's, an attribute of each producer) and send_many are the core's own
    # plain methods, set on each face as it is made
    (tidings.Bus, tidings.AsyncBus, {"start"}),
    (tidings.Consumer, tidings.AsyncConsumer, {"start"}),
    (tidings.Queue, tidings.AsyncQueue, {"start", "enqueue", "accept", "submit", "partition"}),
    (Producer, tidings.AsyncProducer, {"publish", "send_many"}),
    # check_open, call: how the core runs the store's calls in its thread
    (EventStore, AsyncEventStore, {"start", "check_open", "call"}),
]
WRITTEN_BY_HAND = {
    "Bus.close": "also stops the background loop",
    "EventStore.close": "also stops the background loop",
    "EventStore.subscribe": "an iterator that ends when no event comes for timeout_s",
}
"""Sync methods whose docstring says more than the core's, with why."""
OWN_PARAMETERS = {"EventStore.subscribe": "timeout_s: how long to wait for the next event"}
"""Sync methods that take more than the core's, with why."""


def _public(cls: type) -> set[str]:
    return {name for name in dir(cls) if not name.startswith("_")}


@pytest.fixture
def bus() -> Iterator[tidings.Bus]:
    """A bus in memory with one topic."""
    with tidings.connect("memory://") as b:
        b.create_topic("orders")
        yield b


@pytest.mark.parametrize(("face", "core", "left_out"), FACES, ids=[f.__name__ for f, _, _ in FACES])
def test_every_method_of_the_core_has_its_sync_face(
    face: type[SyncFace[Any]], core: type, left_out: set[str]
) -> None:
    assert _public(core) - _public(face) == left_out


@pytest.mark.parametrize(("face", "core", "left_out"), FACES, ids=[f.__name__ for f, _, _ in FACES])
def test_sync_methods_show_the_parameters_and_docstring_of_the_core(
    face: type[SyncFace[Any]], core: type, left_out: set[str]
) -> None:
    for name in sorted(_public(core) - left_out):
        sync, aio = inspect.getattr_static(face, name), inspect.getattr_static(core, name)
        if f"{face.__name__}.{name}" not in WRITTEN_BY_HAND:
            assert inspect.getdoc(sync) == inspect.getdoc(aio), name
        if isinstance(aio, property) or f"{face.__name__}.{name}" in OWN_PARAMETERS:
            continue
        sync_sig, aio_sig = inspect.signature(sync), inspect.signature(aio)
        assert sync_sig.parameters == aio_sig.parameters, name
        if isinstance(sync_sig.return_annotation, type):  # a factory: the sync object
            assert issubclass(sync_sig.return_annotation, SyncFace), name
        else:
            assert sync_sig.return_annotation == aio_sig.return_annotation, name


def _one_line(text: str) -> str:
    """help()'s text with its whitespace collapsed (3.13 puts long signatures on lines
    of their own)."""
    return " ".join(text.split()).replace("( ", "(").replace(" )", ")")


def test_help_shows_the_real_parameters_and_the_docstring() -> None:
    text = _one_line(pydoc.plain(pydoc.render_doc(tidings.Bus.publish)))
    assert (
        "publish(self, topic: 'str', value: 'bytes | None', *, key: 'bytes | None' = None, "
        "headers: 'HeadersInput' = None, partition: 'int | None' = None, "
        "timestamp: 'int | None' = None) -> 'RecordMetadata'"
    ) in text
    assert "Store one record and return where it went, once it is durable." in text
    consumer = _one_line(pydoc.plain(pydoc.render_doc(tidings.Bus.consumer)))
    assert "group: 'str | None' = None" in consumer
    assert "-> tidings.api.consumer.Consumer" in consumer


def test_a_bound_sync_method_shows_its_parameters_without_self(bus: tidings.Bus) -> None:
    assert str(inspect.signature(bus.reset_offsets)) == (
        "(group: 'str', topic: 'str', *, to: 'str | None' = None, "
        "offset: 'int | None' = None, timestamp_ms: 'int | None' = None, "
        "partitions: 'Sequence[int] | None' = None) -> 'dict[TopicPartition, int]'"
    )
    assert repr(bus.publish).startswith("<bound method Bus.publish of <tidings.api.bus.Bus")


def test_the_sync_faces_return_the_types_of_the_core(bus: tidings.Bus) -> None:
    metadata = assert_type(bus.publish("orders", b"v", key=b"k"), RecordMetadata)
    assert metadata.offset == 0
    with bus.consumer("orders", group="g", from_beginning=True) as consumer:
        assert_type(consumer, tidings.Consumer)
        records = assert_type(consumer.poll(timeout_ms=5000), list[Record])
        assert [r.value for r in records] == [b"v"]
        assert_type(consumer.assignment(), set[TopicPartition])
    with bus.queue("jobs", group="w") as queue:
        assert assert_type(queue.topic, str) == "jobs"
        assert assert_type(queue.dead_letter_topic, str | None) is None
        assert assert_type(queue.send(b"job"), RecordMetadata).topic == "jobs"
    assert assert_type(bus.late_replies, int) == 0


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda b: b.publish("orders", b"v", kee=b"k"), "Bus.publish() got an unexpected"),
        (lambda b: b.publish("orders"), "Bus.publish() missing a required argument: 'value'"),
        (lambda b: b.publish_many("orders", [b"v"], 0), "Bus.publish_many() too many posit"),
        (lambda b: b.consumer("orders", grop="g"), "Bus.consumer() got an unexpected"),
        (lambda b: b.queue("orders", grop="g"), "Bus.queue() missing a required"),
        (lambda b: b.create_topic(), "Bus.create_topic() missing a required argument: 'name'"),
    ],
)
def test_arguments_that_do_not_fit_are_refused_by_the_sync_name(
    bus: tidings.Bus, call: Any, message: str
) -> None:
    with pytest.raises(TypeError, match=message.replace("(", r"\(").replace(")", r"\)")):
        call(bus)
    assert bus.describe_topic("orders").records == 0
    assert [t.name for t in bus.list_topics()] == ["orders"]
    assert bus.list_groups() == []


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


def test_the_event_store_faces_return_the_types_of_the_calls() -> None:
    with tidings.eventsourcing.connect("memory://") as store:
        result = assert_type(store.append("order-1", [Event("Placed")]), AppendResult)
        assert result.version == 0
        events = assert_type(store.read_stream("order-1"), list[RecordedEvent])
        assert [e.type for e in events] == ["Placed"]
        assert assert_type(store.stream_version("order-1"), int) == 0
        assert assert_type(store.load_snapshot("order-1"), tuple[int, str] | None) is None
