"""Appends with optimistic concurrency, reads, the global order, subscriptions, metadata."""

from __future__ import annotations

import asyncio
import json
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

import tidings
from tidings import eventsourcing
from tidings.eventsourcing import ANY, EXISTS, NO_STREAM, ConcurrencyError, Event


@dataclass
class Deposited:
    amount: int


def types(events: list[eventsourcing.RecordedEvent]) -> list[str]:
    """The types of events, in order."""
    return [e.type for e in events]


def test_append_and_read_a_stream_forward_and_backward(store: eventsourcing.EventStore) -> None:
    first = store.append("account-1", [Event("Opened", {"owner": "ada"})], NO_STREAM)
    assert (first.version, first.position) == (0, 1)
    second = store.append(
        "account-1",
        [Event.of(Deposited(5)), Event.of(Deposited(7), user="ops")],
        expected_version=0,
        metadata={"correlation_id": "c-1", "causation_id": "k-9"},
    )
    assert (second.version, second.position) == (2, 3)
    events = store.read_stream("account-1")
    assert types(events) == ["Opened", "Deposited", "Deposited"]
    assert [e.version for e in events] == [0, 1, 2]
    assert json.loads(events[2].data) == {"amount": 7}
    assert events[2].metadata == {"correlation_id": "c-1", "causation_id": "k-9", "user": "ops"}
    assert len({e.id for e in events}) == 3 and events[0].recorded_ms > 0
    assert types(store.read_stream("account-1", backward=True, max_count=2)) == [
        "Deposited",
        "Deposited",
    ]
    assert [e.version for e in store.read_stream("account-1", from_version=1)] == [1, 2]
    assert [e.version for e in store.read_stream("account-1", 1, backward=True)] == [1, 0]
    assert store.read_stream("account-2") == []
    assert store.stream_version("account-1") == 2


def test_expected_versions_are_checked(store: eventsourcing.EventStore) -> None:
    store.append("s-1", [Event("A")], NO_STREAM)
    with pytest.raises(ConcurrencyError) as conflict:
        store.append("s-1", [Event("B")], NO_STREAM)
    error = conflict.value
    assert (error.stream_id, error.expected, error.actual) == ("s-1", NO_STREAM, 0)
    assert "s-1" in str(error) and "read the stream again" in str(error)
    with pytest.raises(ConcurrencyError):
        store.append("s-1", [Event("B")], 5)
    with pytest.raises(ConcurrencyError):
        store.append("s-2", [Event("B")], EXISTS)
    store.append("s-1", [Event("B")], EXISTS)
    store.append("s-1", [Event("C")], ANY)
    store.append("s-1", [Event("D")], 2)
    assert types(store.read_stream("s-1")) == ["A", "B", "C", "D"]


def test_an_append_is_all_or_nothing(store: eventsourcing.EventStore) -> None:
    store.append("s-1", [Event("A", id="11111111-1111-1111-1111-111111111111")])
    with pytest.raises(eventsourcing.DuplicateEventError, match="11111111"):
        store.append(
            "s-1",
            [Event("B"), Event("C", id="11111111-1111-1111-1111-111111111111")],
        )
    assert types(store.read_stream("s-1")) == ["A"]
    assert store.last_position() == 1


def test_the_global_order_is_the_commit_order_without_gaps(
    store: eventsourcing.EventStore,
) -> None:
    def writer(n: int) -> None:
        for i in range(50):
            store.append(f"w{n}-{i % 5}", [Event("E", {"n": n, "i": i})])

    threads = [threading.Thread(target=writer, args=(n,)) for n in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    events = store.read_all(1, 1000)
    assert [e.position for e in events] == list(range(1, 201))
    by_stream: dict[str, list[int]] = {}
    for e in events:
        by_stream.setdefault(e.stream_id, []).append(e.version)
    assert all(v == list(range(len(v))) for v in by_stream.values())
    assert [e.position for e in store.read_all(150, 10)] == list(range(150, 160))


def test_subscriptions_catch_up_then_go_live_without_gap(store_url: str) -> None:
    async def body() -> None:
        store = await eventsourcing.connect_async(store_url)
        for i in range(30):
            await store.append(f"order-{i % 3}", [Event("Placed", {"i": i})])
            await store.append(f"user-{i % 2}", [Event("Seen")])
        seen: list[int] = []
        orders: list[int] = []

        async def follow() -> None:
            async for event in store.subscribe(1):
                seen.append(event.position)
                if len(seen) == 120:
                    return

        async def follow_orders() -> None:
            async for event in store.subscribe(1, category="order"):
                orders.append(json.loads(event.data)["i"])
                if len(orders) == 60:
                    return

        tasks = [asyncio.create_task(follow()), asyncio.create_task(follow_orders())]
        for i in range(30, 60):  # written while the subscriptions catch up and go live
            await store.append(f"order-{i % 3}", [Event("Placed", {"i": i})])
            await store.append(f"user-{i % 2}", [Event("Seen")])
            await asyncio.sleep(0)
        await asyncio.wait_for(asyncio.gather(*tasks), 10)
        assert seen == list(range(1, 121))
        assert orders == list(range(60))
        resumed = []
        async for event in store.subscribe(119):  # from a checkpoint
            resumed.append(event.position)
            if len(resumed) == 2:
                break
        assert resumed == [119, 120]
        await store.close()

    asyncio.run(body())


def test_stream_metadata_limits_what_is_readable(store: eventsourcing.EventStore) -> None:
    store.append("log-1", [Event("E", {"i": i}) for i in range(10)])
    store.set_metadata("log-1", max_count=3, purpose="audit")
    assert [e.version for e in store.read_stream("log-1")] == [7, 8, 9]
    assert store.metadata("log-1").custom == {"purpose": "audit"}
    time.sleep(1.5)  # the first ten are older than the limit below, however slow the machine
    store.append("log-1", [Event("E", {"i": 10})])
    # replaces max_count: only age limits now; a second is ample to read the new event in
    store.set_metadata("log-1", max_age_ms=1000)
    assert [e.version for e in store.read_stream("log-1")] == [10]
    with pytest.raises(tidings.ConfigurationError, match="max_count"):
        store.set_metadata("log-1", max_count=-1)


def test_soft_and_hard_delete(store: eventsourcing.EventStore) -> None:
    store.append("cart-1", [Event("Added"), Event("Added")])
    store.delete_stream("cart-1")
    assert store.read_stream("cart-1") == []
    store.append("cart-1", [Event("Added")], NO_STREAM)  # a soft-deleted stream comes back
    recreated = store.read_stream("cart-1")
    assert types(recreated) == ["Added"] and recreated[0].version == 2
    store.delete_stream("cart-1", hard=True)
    with pytest.raises(eventsourcing.StreamDeletedError, match="cart-1"):
        store.append("cart-1", [Event("Added")])
    with pytest.raises(eventsourcing.StreamDeletedError):
        store.read_stream("cart-1")
    assert len(store.read_all(1, 100)) == 3  # the global history keeps them


@pytest.mark.parametrize("shared", ["sqlite", "postgres"])
def test_writers_on_many_connections_never_show_a_reader_a_gap(
    shared: str, request: pytest.FixtureRequest, tmp_path: Path
) -> None:
    """Each writer has its own connection (as separate hosts would); a subscriber that
    saw a later position before an earlier one committed would miss the earlier one."""
    if shared == "sqlite":
        url = f"sqlite://{tmp_path}/shared.db"
    else:
        dsn = dict(item.split("=", 1) for item in request.getfixturevalue("pg_dsn").split())
        url = f"postgresql://{dsn['user']}@{dsn['host']}:{dsn['port']}/{dsn['dbname']}"
    writers = [eventsourcing.connect(url) for _ in range(3)]
    reader = eventsourcing.connect(url)
    received: list[int] = []

    def read() -> None:
        for event in reader.subscribe(1, timeout_s=5):
            received.append(event.position)
            if len(received) == 300:
                return

    def write(store: eventsourcing.EventStore, n: int) -> None:
        for i in range(100):
            store.append(f"w{n}-{i % 7}", [Event("E")])

    following = threading.Thread(target=read)
    following.start()
    threads = [threading.Thread(target=write, args=(s, n)) for n, s in enumerate(writers)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    following.join(30)
    for s in [*writers, reader]:
        s.close()
    assert received == list(range(1, 301))


def test_concurrent_appends_succeed_or_fail_each_on_their_own(
    store: eventsourcing.EventStore,
) -> None:
    """Appends committed together (a group commit) still check their versions one by one."""
    outcomes: list[str] = []
    lock = threading.Lock()
    start = threading.Barrier(12)

    def contend(n: int) -> None:
        start.wait(10)
        try:
            store.append("leader-1", [Event("Elected", {"n": n})], NO_STREAM)
            result = "won"
        except ConcurrencyError:
            result = "lost"
        store.append(f"own-{n}", [Event("Mine")], NO_STREAM)  # never conflicts
        with lock:
            outcomes.append(result)

    threads = [threading.Thread(target=contend, args=(n,)) for n in range(12)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(outcomes) == ["lost"] * 11 + ["won"]
    assert len(store.read_stream("leader-1")) == 1
    assert all(store.stream_version(f"own-{n}") == 0 for n in range(12))
    assert [e.position for e in store.read_all(1, 100)] == list(range(1, 14))
