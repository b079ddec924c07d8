"""Publish/subscribe: fan-out to groups, subject patterns, and ephemeral subscriptions."""

from __future__ import annotations

import pytest

import tidings

from .helpers import collect


def topics_of(records: list[tidings.Record]) -> list[str]:
    """The topic of each record, sorted."""
    return sorted(r.topic for r in records)


@pytest.fixture
def orders(bus: tidings.Bus) -> tidings.Bus:
    """Topics orders.created, orders.paid, orders.eu.created and payments.created."""
    for name in ("orders.created", "orders.paid", "orders.eu.created", "payments.created"):
        bus.create_topic(name)
    return bus


def publish_one_each(bus: tidings.Bus) -> None:
    """One record on every topic."""
    for spec in bus.list_topics():
        bus.publish(spec.name, spec.name.encode())


def test_every_group_gets_every_record(orders: tidings.Bus) -> None:
    groups = [orders.consumer("orders.created", group=g, from_beginning=True) for g in "abcd"]
    try:
        orders.publish_many("orders.created", [b"%d" % i for i in range(10)])
        for consumer in groups:
            assert len(collect(consumer, 10)) == 10
    finally:
        for consumer in groups:
            consumer.close()


@pytest.mark.parametrize(
    ("pattern", "expected"),
    [
        ("orders.*", ["orders.created", "orders.paid"]),
        ("orders.>", ["orders.created", "orders.eu.created", "orders.paid"]),
        (r"^(orders|payments)\.created$", ["orders.created", "payments.created"]),
    ],
)
def test_a_group_subscribes_by_pattern(
    orders: tidings.Bus, pattern: str, expected: list[str]
) -> None:
    publish_one_each(orders)
    with orders.consumer(pattern, group="audit", from_beginning=True) as consumer:
        assert topics_of(collect(consumer, len(expected))) == expected
        assert consumer.poll(timeout_ms=100) == []


def test_a_matching_topic_created_later_is_picked_up(orders: tidings.Bus) -> None:
    with orders.consumer("orders.*", group="audit", from_beginning=True) as consumer:
        consumer.poll(timeout_ms=0)
        orders.create_topic("orders.refunded")
        orders.publish("orders.refunded", b"r")
        (record,) = collect(consumer, 1)
        assert (record.topic, record.value) == ("orders.refunded", b"r")


def test_an_ephemeral_subscription_starts_at_the_end_and_leaves_nothing(
    orders: tidings.Bus,
) -> None:
    orders.publish("orders.created", b"before")
    with orders.subscribe("orders.*") as subscription:
        orders.publish("orders.created", b"after")
        orders.publish("orders.paid", b"paid")
        assert sorted(r.value or b"" for r in collect(subscription, 2)) == [b"after", b"paid"]
        assert subscription.poll(timeout_ms=100) == []
    assert orders.list_groups() == []


def test_an_ephemeral_subscription_reads_a_new_topic_from_its_first_record(
    orders: tidings.Bus,
) -> None:
    with orders.subscribe("orders.>") as subscription:
        orders.create_topic("orders.us.created")
        orders.publish("orders.us.created", b"first")
        got = collect(subscription, 1)  # found within the metadata refresh (about 1 s)
        orders.publish("orders.us.created", b"second")
        got += collect(subscription, 1)
        assert [(r.topic, r.value) for r in got] == [
            ("orders.us.created", b"first"),
            ("orders.us.created", b"second"),
        ]


def test_subscribing_without_a_topic_or_with_a_bad_pattern_is_refused(
    orders: tidings.Bus,
) -> None:
    with pytest.raises(tidings.ConfigurationError, match=r"bus\.subscribe"):
        orders.subscribe()
    for bad in ("orders.>.x", "orders.cre*", "^(open"):
        with pytest.raises(tidings.ConfigurationError, match=r"pattern|regular expression"):
            orders.subscribe(bad)
    with pytest.raises(tidings.TopicNotFoundError, match=r"orders\.missing"):
        orders.subscribe("orders.missing")
    assert orders.list_groups() == []
