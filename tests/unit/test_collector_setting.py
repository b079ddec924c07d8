"""Reading records never touches the application's garbage collector setting, and the
records read need no collector work where the compiled maker is built."""

from __future__ import annotations

import gc
import importlib
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

import tidings
from tidings.core import batch as codec
from tidings.core import records as records_module
from tidings.core.records import Record

READERS = 4
BATCHES = 20
PER_BATCH = 500


@pytest.fixture(params=[True, False], ids=["collector-on", "collector-off"])
def collecting(request: pytest.FixtureRequest) -> Iterator[bool]:
    """The application's collector setting, restored after the test."""
    before = gc.isenabled()
    if request.param:
        gc.enable()
    else:
        gc.disable()
    yield request.param
    if before:
        gc.enable()
    else:
        gc.disable()


def _watching(work: Callable[[], None], threads: int) -> set[bool]:
    """Run `work` on `threads` threads at once; every gc.isenabled() seen meanwhile."""
    seen: set[bool] = set()
    done = threading.Event()

    def watch() -> None:
        while not done.is_set():
            seen.add(gc.isenabled())

    watcher = threading.Thread(target=watch)
    watcher.start()
    errors: list[BaseException] = []

    def run() -> None:
        try:
            work()
        except BaseException as e:
            errors.append(e)

    workers = [threading.Thread(target=run) for _ in range(threads)]
    for w in workers:
        w.start()
    for w in workers:
        w.join()
    done.set()
    watcher.join()
    assert not errors, errors
    seen.add(gc.isenabled())
    return seen


def test_decoding_batches_on_several_threads_keeps_the_collector_setting(collecting: bool) -> None:
    stored = codec.encode([b"v%d" % i for i in range(PER_BATCH)], None, [1] * PER_BATCH).data

    def decode() -> None:
        for i in range(BATCHES):
            assert len(codec.decode("t", 0, i * PER_BATCH, stored)) == PER_BATCH

    assert _watching(decode, READERS) == {collecting}


def test_consumers_on_several_threads_keep_the_collector_setting(
    collecting: bool, tmp_path: Path
) -> None:
    bus = tidings.connect(f"sqlite://{tmp_path}/bus")
    try:
        bus.create_topic("orders", partitions=2)
        with bus.producer() as producer:
            for i in range(BATCHES * PER_BATCH):
                producer.send("orders", b"%d" % i, key=b"k%d" % (i % 7))
        read: list[int] = []

        def consume() -> None:
            group = f"reader-{threading.get_ident()}"  # each reads every record
            with bus.consumer("orders", group=group, from_beginning=True) as consumer:
                got = 0
                while records := consumer.poll(max_records=PER_BATCH, timeout_ms=500):
                    got += len(records)
                read.append(got)

        assert _watching(consume, READERS) == {collecting}
        assert read == [BATCHES * PER_BATCH] * READERS
    finally:
        bus.close()


def test_compiled_records_read_from_a_batch_are_left_to_reference_counting() -> None:
    compiled: Any = importlib.import_module("tidings.core._records")  # fails where not built
    stored = codec.encode([b"a", None], [b"k", None], [5, 6], [(("h", b"1"),), ()]).data
    columns = [tuple(r) for r in codec.decode("t", 1, 10, stored)]
    records = compiled.records(Record, iter(columns))
    assert records == [
        Record("t", 1, 10, 5, b"k", b"a", (("h", b"1"),)),
        Record("t", 1, 11, 6, None, None, ()),
    ]
    assert all(type(r) is Record and not gc.is_tracked(r) for r in records)
    assert hash(records[0]) == hash(columns[0])


def test_a_compiled_record_holding_other_values_stays_with_the_collector() -> None:
    compiled: Any = importlib.import_module("tidings.core._records")
    held: list[object] = []
    (record,) = compiled.records(Record, [("t", 0, 0, 0, None, held, ())])
    held.append(record)  # a cycle only the collector can free
    assert gc.is_tracked(record)


def test_the_compiled_maker_refuses_what_is_not_rows_of_fields() -> None:
    compiled: Any = importlib.import_module("tidings.core._records")
    with pytest.raises(TypeError, match="a tuple subclass"):
        compiled.records(dict, [])
    with pytest.raises(TypeError, match="must be a tuple, not list"):
        compiled.records(Record, [("t", 0, 0, 0, None, b"v", ()), ["not", "a", "tuple"]])
    with pytest.raises(TypeError):
        compiled.records(Record, 5)


def test_python_makes_the_same_records_where_the_compiled_maker_is_not_built() -> None:
    rows = [("t", 0, i, i, None, b"v", ()) for i in range(3)]
    made = records_module._records_in_python(Record, iter(rows))
    assert made == importlib.import_module("tidings.core._records").records(Record, iter(rows))
    assert all(type(r) is Record for r in made)
