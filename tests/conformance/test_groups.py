"""Consumer groups: members split partitions, hand them over, and commit only their own."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any

import pytest

import tidings
from tidings import CommitFailedError, GroupNotEmptyError, GroupNotFoundError, TopicPartition
from tidings.engines.base import Capability

from .helpers import WAIT_S, eventually, tansu_group_admin, tansu_leave

ALL = {TopicPartition("orders", p) for p in range(4)}
FAST = {"session_timeout_ms": 1000, "heartbeat_interval_ms": 50}
STRATEGIES = ["range", "cooperative-sticky"]


def member(bus: tidings.Bus, group: str = "g", **options: Any) -> tidings.Consumer:
    """A group member of "orders" that heartbeats often."""
    return bus.consumer("orders", group=group, **{**FAST, **options})


def settle(condition: Callable[[], bool], *consumers: tidings.Consumer, what: str) -> None:
    """Poll the members until `condition` holds: as in Kafka, rebalances happen in poll."""

    def polled() -> bool:
        for c in consumers:
            c.poll(timeout_ms=0)
        return condition()

    eventually(polled, what=what)


def split(*consumers: tidings.Consumer) -> bool:
    """Whether the consumers own disjoint, non-empty shares that cover every partition."""
    shares = [c.assignment() for c in consumers]
    union: set[TopicPartition] = set().union(*shares)
    return all(shares) and union == ALL and sum(map(len, shares)) == len(ALL)


def poll_until(consumers: list[tidings.Consumer], count: int) -> list[tidings.Record]:
    """Poll every consumer in turn until `count` records arrived in total."""
    out: list[tidings.Record] = []
    deadline = time.monotonic() + WAIT_S
    while len(out) < count and time.monotonic() < deadline:
        for c in consumers:
            out.extend(c.poll(timeout_ms=20))
    return out


@pytest.fixture
def orders(bus: tidings.Bus) -> tidings.Bus:
    """A bus with a 4-partition "orders" topic."""
    bus.create_topic("orders", partitions=4)
    return bus


def test_single_member_owns_every_partition(orders: tidings.Bus) -> None:
    with member(orders) as a:
        settle(lambda: a.assignment() == ALL, a, what="the only member to own all")


@pytest.mark.parametrize("strategy", STRATEGIES)
def test_two_members_split_partitions(orders: tidings.Bus, strategy: str) -> None:
    with (
        member(orders, strategy=strategy, from_beginning=True) as a,
        member(orders, strategy=strategy, from_beginning=True) as b,
    ):
        settle(lambda: split(a, b), a, b, what="a valid split")
        assert len(a.assignment()) == len(b.assignment()) == 2
        values = [b"%d" % i for i in range(40)]
        metas = orders.publish_many("orders", values, keys=values)
        got: list[tidings.Record] = []
        for c in (a, b):
            owned = c.assignment()
            mine = [m for m in metas if TopicPartition(m.topic, m.partition) in owned]
            records = poll_until([c], len(mine))
            assert {TopicPartition(r.topic, r.partition) for r in records} <= owned
            got.extend(records)
        assert sorted(r.value or b"" for r in got) == sorted(values)


@pytest.mark.parametrize("strategy", STRATEGIES)
def test_three_members_split_partitions(orders: tidings.Bus, strategy: str) -> None:
    with (
        member(orders, strategy=strategy) as a,
        member(orders, strategy=strategy) as b,
        member(orders, strategy=strategy) as c,
    ):
        settle(lambda: split(a, b, c), a, b, c, what="a valid split")
        assert sorted(len(x.assignment()) for x in (a, b, c)) == [1, 1, 2]


@pytest.mark.parametrize("strategy", STRATEGIES)
def test_member_that_leaves_hands_its_partitions_over(orders: tidings.Bus, strategy: str) -> None:
    a = member(orders, strategy=strategy, from_beginning=True)
    b = member(orders, strategy=strategy)
    try:
        settle(lambda: split(a, b), a, b, what="a valid split")
        b.close()
        settle(lambda: a.assignment() == ALL, a, what="the remaining member to own all")
        orders.publish_many(
            "orders", [b"%d" % i for i in range(4)], keys=[b"%d" % i for i in range(4)]
        )
        assert len(poll_until([a], 4)) == 4
    finally:
        a.close()
        b.close()


def test_handover_resumes_after_committed_offsets(orders: tidings.Bus) -> None:
    keys = [b"k%d" % i for i in range(40)]
    orders.publish_many("orders", keys, keys=keys)
    a = member(orders, from_beginning=True)
    try:
        assert len(poll_until([a], 40)) == 40
        a.commit()
        b = member(orders, from_beginning=True)
        try:
            settle(lambda: split(a, b), a, b, what="a valid split")
            assert b.poll(timeout_ms=100) == []
            orders.publish_many("orders", [b"new"] * 8, keys=keys[:8])
            assert len(poll_until([a, b], 8)) == 8
        finally:
            b.close()
    finally:
        a.close()


def test_auto_commit_commits_what_was_polled_at_its_interval(orders: tidings.Bus) -> None:
    orders.publish_many("orders", [b"v"] * 8, partition=0)
    with member(orders, from_beginning=True, auto_commit_interval_ms=200) as consumer:
        assert len(poll_until([consumer], 8)) == 8
        # a poll after the interval commits what the polls before it returned, unclosed
        eventually(
            lambda: (
                consumer.poll(timeout_ms=20) == []
                and consumer.committed(TopicPartition("orders", 0))
                == {TopicPartition("orders", 0): 8}
            ),
            what="the auto-commit",
        )


def test_cooperative_sticky_join_moves_only_what_moves(orders: tidings.Bus) -> None:
    changes: list[tidings.Rebalance] = []
    with member(orders, strategy="cooperative-sticky", on_rebalance=changes.append) as a:
        settle(lambda: a.assignment() == ALL, a, what="the first member to own all")
        with member(orders, strategy="cooperative-sticky") as b:
            settle(lambda: split(a, b), a, b, what="a valid split")
            a.poll(timeout_ms=0)  # delivers pending rebalance callbacks
            revoked = {tp for change in changes for tp in change.revoked}
            assigned = {tp for change in changes for tp in change.assigned}
            assert assigned == ALL
            assert revoked == b.assignment()
            assert not revoked & a.assignment()


def test_range_join_revokes_before_reassigning(orders: tidings.Bus) -> None:
    changes: list[tidings.Rebalance] = []
    with member(orders, on_rebalance=changes.append) as a:
        settle(lambda: a.assignment() == ALL, a, what="the first member to own all")
        with member(orders) as b:
            settle(lambda: split(a, b), a, b, what="a valid split")
            a.poll(timeout_ms=0)
            assert (set(changes[0].revoked), set(changes[0].assigned)) == (set(), ALL)
            assert (set(changes[1].revoked), set(changes[1].assigned)) == (ALL, set())
            assert set(changes[-1].assigned) == a.assignment()


def test_members_of_one_group_must_share_a_strategy(orders: tidings.Bus) -> None:
    with member(orders, strategy="range"), pytest.raises(tidings.GroupError):
        member(orders, strategy="cooperative-sticky")


@pytest.mark.needs(Capability.ADD_PARTITIONS)
def test_group_picks_up_added_partitions(orders: tidings.Bus) -> None:
    with member(orders) as a:
        settle(lambda: a.assignment() == ALL, a, what="the member to own all")
        orders.add_partitions("orders", 6)
        settle(
            lambda: a.assignment() == {TopicPartition("orders", p) for p in range(6)},
            a,
            what="the member to own the new partitions",
        )


def test_commit_of_a_partition_not_owned_fails(orders: tidings.Bus) -> None:
    orders.publish_many("orders", [b"v"] * 4, keys=[b"%d" % i for i in range(4)])
    with member(orders, auto_commit=False) as a, member(orders, auto_commit=False) as b:
        settle(lambda: split(a, b), a, b, what="a valid split")
        theirs = sorted(b.assignment())[0]
        with pytest.raises(CommitFailedError) as info:
            a.commit({theirs: 1})
        assert info.value.group == "g"
        mine = sorted(a.assignment())[0]
        a.commit({mine: 1})
        assert a.committed(mine, theirs) == {mine: 1}


def test_each_group_gets_every_record(orders: tidings.Bus) -> None:
    values = [b"%d" % i for i in range(20)]
    orders.publish_many("orders", values, keys=values)
    with (
        member(orders, "a", from_beginning=True) as a,
        member(orders, "b", from_beginning=True) as b,
    ):
        assert sorted(r.value or b"" for r in poll_until([a], 20)) == sorted(values)
        assert sorted(r.value or b"" for r in poll_until([b], 20)) == sorted(values)


@tansu_group_admin
def test_describe_group(orders: tidings.Bus) -> None:
    for p in range(4):
        orders.publish_many("orders", [b"v"] * 5, partition=p)
    tp = [TopicPartition("orders", p) for p in range(4)]
    with member(orders, client_id="billing-1", auto_commit=False) as a:
        settle(lambda: a.assignment() == ALL, a, what="the member to own all")
        a.commit({tp[0]: 3, tp[1]: 5})
        d = orders.describe_group("g")
        assert d.group == "g"
        assert d.state == "Stable"
        assert d.strategy == "range"
        (m,) = d.members
        assert m.client_id == "billing-1"
        assert m.topics == ("orders",)
        assert set(m.assignment) == ALL
        rows = [(p.partition, p.committed, p.end_offset, p.lag, p.owner) for p in d.partitions]
        assert rows == [
            (0, 3, 5, 2, m.member_id),
            (1, 5, 5, 0, m.member_id),
            (2, None, 5, 5, m.member_id),
            (3, None, 5, 5, m.member_id),
        ]
        assert d.lag == 12
    d = orders.describe_group("g")
    assert d.state == "Empty"
    assert d.members == ()
    assert [(p.partition, p.committed, p.owner) for p in d.partitions] == [
        (0, 3, None),
        (1, 5, None),
    ]
    assert orders.list_groups() == ["g"]


def test_describe_unknown_group(bus: tidings.Bus) -> None:
    with pytest.raises(GroupNotFoundError) as info:
        bus.describe_group("nobody")
    assert info.value.group == "nobody"


def committed_group(bus: tidings.Bus) -> None:
    """Records with timestamps 1000, 2000, ... in each partition, and group "g" at offset 2."""
    for p in range(4):
        with bus.producer() as producer:
            for i in range(5):
                producer.send("orders", b"v", partition=p, timestamp=(i + 1) * 1000)
    with member(bus, auto_commit=False) as a:
        settle(lambda: a.assignment() == ALL, a, what="the member to own all")
        a.commit(dict.fromkeys(ALL, 2))


def committed(bus: tidings.Bus) -> list[int | None]:
    """Group "g"'s committed offset per partition of "orders"."""
    return [p.committed for p in bus.describe_group("g").partitions]


@pytest.mark.parametrize(
    ("how", "expected"),
    [
        ({"to": "earliest"}, [0, 0, 0, 0]),
        ({"to": "latest"}, [5, 5, 5, 5]),
        ({"offset": 4}, [4, 4, 4, 4]),
        ({"timestamp_ms": 2500}, [2, 2, 2, 2]),
        ({"timestamp_ms": 3000}, [2, 2, 2, 2]),
        ({"timestamp_ms": 3001}, [3, 3, 3, 3]),
        ({"timestamp_ms": 99_000}, [5, 5, 5, 5]),
        ({"to": "earliest", "partitions": [1, 3]}, [2, 0, 2, 0]),
    ],
)
@tansu_group_admin
def test_reset_offsets(orders: tidings.Bus, how: dict[str, Any], expected: list[int]) -> None:
    committed_group(orders)
    orders.reset_offsets("g", "orders", **how)
    assert committed(orders) == expected
    with member(orders) as a:
        got = poll_until([a], sum(5 - e for e in expected))
        assert a.poll(timeout_ms=50) == []
    starts = {p: min((r.offset for r in got if r.partition == p), default=5) for p in range(4)}
    assert [starts[p] for p in range(4)] == expected


@tansu_group_admin
def test_reset_offsets_returns_the_new_offsets(orders: tidings.Bus) -> None:
    committed_group(orders)
    result = orders.reset_offsets("g", "orders", to="latest")
    assert result == dict.fromkeys(ALL, 5)


@tansu_group_admin
def test_reset_offsets_of_a_live_group_is_refused(orders: tidings.Bus) -> None:
    committed_group(orders)
    with member(orders, auto_commit=False):
        with pytest.raises(GroupNotEmptyError) as info:
            orders.reset_offsets("g", "orders", to="earliest")
        assert info.value.group == "g"
    assert committed(orders) == [2, 2, 2, 2]


def test_reset_offsets_needs_exactly_one_target(orders: tidings.Bus) -> None:
    committed_group(orders)
    for how in ({}, {"to": "earliest", "offset": 1}, {"to": "middle"}):
        with pytest.raises(tidings.ConfigurationError):
            orders.reset_offsets("g", "orders", **how)
    assert committed(orders) == [2, 2, 2, 2]


def test_reset_offsets_of_an_unknown_partition_is_refused(orders: tidings.Bus) -> None:
    committed_group(orders)
    with pytest.raises(tidings.PartitionNotFoundError, match="no partition 9"):
        orders.reset_offsets("g", "orders", to="earliest", partitions=[0, 9])
    assert committed(orders) == [2, 2, 2, 2]


def test_delete_group(orders: tidings.Bus) -> None:
    committed_group(orders)
    orders.delete_group("g")
    assert orders.list_groups() == []
    with pytest.raises(GroupNotFoundError):
        orders.describe_group("g")
    with member(orders, from_beginning=True) as a:
        assert len(poll_until([a], 20)) == 20


@tansu_group_admin
def test_delete_live_group_is_refused(orders: tidings.Bus) -> None:
    with member(orders) as a:
        settle(lambda: a.assignment() == ALL, a, what="the member to own all")
        with pytest.raises(GroupNotEmptyError):
            orders.delete_group("g")
        assert orders.list_groups() == ["g"]
        assert a.assignment() == ALL


def test_delete_unknown_group(bus: tidings.Bus) -> None:
    with pytest.raises(GroupNotFoundError):
        bus.delete_group("nobody")


def take(into: list[tidings.Record], consumer: tidings.Consumer) -> bool:
    """Poll `consumer` once into `into`; True, so it can lead a condition."""
    into.extend(consumer.poll(timeout_ms=20))
    return True


def test_iterating_across_a_rebalance_hands_no_record_to_two_members(orders: tidings.Bus) -> None:
    for p in range(4):
        orders.publish_many("orders", [b"%d" % i for i in range(500)], partition=p)
    by_a: list[tidings.Record] = []
    by_b: list[tidings.Record] = []
    a = member(orders, from_beginning=True)
    try:
        # a iterates in its own thread, as applications do; b joins while a holds a batch
        reading = threading.Thread(target=lambda: by_a.extend(a), daemon=True)
        reading.start()
        eventually(lambda: len(by_a) > 0, what="a to start")
        with member(orders, from_beginning=True) as b:
            eventually(lambda: take(by_b, b) and split(a, b), what="the split")
            orders.publish_many("orders", [b"new"] * 40, keys=[b"%d" % i for i in range(40)])
            eventually(
                lambda: take(by_b, b) and len(by_a) + len(by_b) >= 2040,
                what="all",
            )
    finally:
        a.close()
        reading.join(timeout=5)
    records = [(r.partition, r.offset) for r in by_a + by_b]
    assert len(records) == len(set(records)) == 2040


@tansu_leave
def test_a_member_that_stops_polling_leaves_the_group(orders: tidings.Bus) -> None:
    with member(orders, max_poll_interval_ms=300) as a:
        settle(lambda: a.assignment() == ALL, a, what="the member to own all")
        with member(orders) as b:
            # a never polls again: after max_poll_interval_ms it is out, and b owns all
            eventually(
                lambda: not b.poll(timeout_ms=0) and b.assignment() == ALL,
                what="b",
            )
            with pytest.raises(CommitFailedError, match="out of group"):
                a.commit({TopicPartition("orders", 0): 0})
            assert {m.member_id for m in orders.describe_group("g").members} == {
                next(iter(o.owner for o in orders.describe_group("g").partitions))
            }
