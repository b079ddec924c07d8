"""The App: handlers by decorator, decoding by type hint, error policies, graceful stop."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pydantic
import pytest

import tidings
from tidings import Record, TopicPartition
from tidings.app import App
from tidings.engines.base import Capability

from .helpers import run_async


@dataclass
class Order:
    id: int
    item: str


@dataclass
class Invoice:
    order: int
    total: float


class NotAMessage:
    """A class no codec knows."""


async def until(condition: Callable[[], bool], timeout_s: float = 5.0) -> None:
    """Wait until `condition()` holds, failing after `timeout_s`."""
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, "timed out waiting"
        await asyncio.sleep(0.01)


async def read(bus: tidings.AsyncBus, topic: str) -> list[Record]:
    """Every record of partition 0 of `topic`, read without a group."""
    end = (await bus.describe_topic(topic)).partitions[0].end_offset
    consumer = bus.consumer()
    tp = TopicPartition(topic, 0)
    await consumer.assign(tp)
    await consumer.seek(tp, "earliest")
    out: list[Record] = []
    while consumer.position(tp) < end:
        out.extend(await consumer.poll(timeout_ms=100))
    await consumer.close()
    return out


async def committed(bus: tidings.AsyncBus, group: str, topic: str) -> int | None:
    """The group's committed offset on partition 0 of `topic` (None: nothing committed)."""
    try:
        described = await bus.describe_group(group)
    except tidings.GroupNotFoundError:  # left with nothing committed
        return None
    for p in described.partitions:
        if p.topic == topic and p.partition == 0:
            return p.committed
    return None


def test_decoding_by_type_hint(bus_url: str) -> None:
    seen: dict[str, Any] = {}

    async def body(bus: tidings.AsyncBus) -> None:
        app = App(bus)

        @app.subscriber("d.dataclass")
        async def as_dataclass(order: Order) -> None:
            seen["dataclass"] = order

        @app.subscriber("d.dict")
        async def as_dict(data: dict[str, int]) -> None:
            seen["dict"] = data

        @app.subscriber("d.bytes")
        def as_bytes(raw: bytes) -> None:
            seen["bytes"] = raw

        @app.subscriber("d.str")
        async def as_str(text: str) -> None:
            seen["str"] = text

        @app.subscriber("d.record")
        async def as_record(record: Record) -> None:
            seen["record"] = record

        for name in ("d.dataclass", "d.dict", "d.bytes", "d.str", "d.record"):
            await bus.create_topic(name)
        await app.start()
        await bus.publish("d.dataclass", b'{"id": 7, "item": "tea"}')
        await bus.publish("d.dict", b'{"a": 1}')
        await bus.publish("d.bytes", b"\x00\xff")
        await bus.publish("d.str", "héllo".encode())
        await bus.publish("d.record", b"r", key=b"k")
        await until(lambda: len(seen) == 5)
        await app.stop()

    run_async(bus_url, body)
    assert seen["dataclass"] == Order(7, "tea")
    assert seen["dict"] == {"a": 1}
    assert seen["bytes"] == b"\x00\xff"
    assert seen["str"] == "héllo"
    assert isinstance(seen["record"], Record)
    assert (seen["record"].key, seen["record"].value) == (b"k", b"r")


def test_an_unsupported_annotation_is_refused_when_declared(bus_url: str) -> None:
    async def body(bus: tidings.AsyncBus) -> None:
        app = App(bus)
        with pytest.raises(tidings.ConfigurationError, match="pydantic"):

            @app.subscriber("x")
            async def handler(message: NotAMessage) -> None: ...

        with pytest.raises(tidings.ConfigurationError, match="exactly one"):

            @app.subscriber("x")
            async def two(a: bytes, b: bytes) -> None: ...

        with pytest.raises(tidings.ConfigurationError, match="dead_letter_topic="):

            @app.subscriber("orders.>", group="g")  # would read its own '<topic>.dlq'
            async def everything(raw: bytes) -> None: ...

    run_async(bus_url, body)


def test_a_pattern_subscriber_gets_every_matching_topic(bus_url: str) -> None:
    topics: list[str] = []

    async def body(bus: tidings.AsyncBus) -> None:
        app = App(bus)

        @app.subscriber("orders.*")
        async def audit(record: Record) -> None:
            topics.append(record.topic)

        for name in ("orders.created", "orders.paid", "payments.created"):
            await bus.create_topic(name)
        await app.start()
        for name in ("orders.created", "orders.paid", "payments.created"):
            await bus.publish(name, b"x")
        await until(lambda: len(topics) == 2)
        await asyncio.sleep(0.1)
        await app.stop()

    run_async(bus_url, body)
    assert sorted(topics) == ["orders.created", "orders.paid"]


def test_a_group_subscriber_commits_only_after_the_handler(bus_url: str) -> None:
    async def body(bus: tidings.AsyncBus) -> None:
        app = App(bus)
        started, release = asyncio.Event(), asyncio.Event()

        @app.subscriber("audit", group="auditors", from_beginning=True)
        async def audit(order: Order) -> None:
            started.set()
            await release.wait()

        await bus.create_topic("audit")
        await bus.publish("audit", b'{"id": 1, "item": "tea"}')
        await app.start()
        await asyncio.wait_for(started.wait(), 5)
        assert await committed(bus, "auditors", "audit") is None
        release.set()
        deadline = time.monotonic() + 5
        while await committed(bus, "auditors", "audit") != 1:
            assert time.monotonic() < deadline, "offset never committed"
            await asyncio.sleep(0.01)
        await app.stop()

    run_async(bus_url, body)


@pytest.mark.needs(Capability.SHARE_GROUPS)
def test_a_queue_subscriber_retries_with_backoff_then_dead_letters(bus_url: str) -> None:
    attempts: list[float] = []

    async def body(bus: tidings.AsyncBus) -> None:
        app = App(bus)

        @app.subscriber("jobs", queue="workers", max_deliveries=3, retry_backoff_ms=40)
        def work(order: Order) -> None:
            attempts.append(time.monotonic())
            raise RuntimeError("downstream is down")

        await app.start()
        await bus.publish("jobs", b'{"id": 1, "item": "tea"}', key=b"o1")
        deadline = time.monotonic() + 5
        while not (await bus.describe_topic("jobs.dlq")).records:
            assert time.monotonic() < deadline, "never dead-lettered"
            await asyncio.sleep(0.02)
        await app.stop()
        [dead] = await read(bus, "jobs.dlq")
        assert dead.key == b"o1"
        assert dead.header("tidings.dlq.deliveries") == b"3"

    run_async(bus_url, body)
    assert len(attempts) == 3
    gaps = [b - a for a, b in itertools.pairwise(attempts)]
    assert gaps[0] >= 0.035  # 40 ms after the first failure
    assert gaps[1] >= 0.075  # then 80 ms


@pytest.mark.needs(Capability.SHARE_GROUPS)
def test_a_decode_error_dead_letters_at_once_with_the_reason(bus_url: str) -> None:
    calls: list[Order] = []

    async def body(bus: tidings.AsyncBus) -> None:
        app = App(bus)

        @app.subscriber("bills", queue="billing", max_deliveries=5)
        async def bill(order: Order) -> None:
            calls.append(order)

        await app.start()
        await bus.publish("bills", b"not json")
        deadline = time.monotonic() + 5
        while not (await bus.describe_topic("bills.dlq")).records:
            assert time.monotonic() < deadline, "never dead-lettered"
            await asyncio.sleep(0.02)
        await app.stop()
        [dead] = await read(bus, "bills.dlq")
        assert dead.value == b"not json"
        assert b"not JSON" in (dead.header("tidings.dlq.reason") or b"")
        assert dead.header("tidings.dlq.deliveries") == b"1"

    run_async(bus_url, body)
    assert calls == []


@pytest.mark.needs(Capability.SHARE_GROUPS)
def test_the_return_value_is_published_keeping_the_key(bus_url: str) -> None:
    async def body(bus: tidings.AsyncBus) -> None:
        app = App(bus)

        @app.subscriber("orders.created", queue="invoices", publishes="invoices")
        def invoice(order: Order) -> Invoice:  # sync: runs in a thread
            return Invoice(order.id, 9.5)

        await bus.create_topic("invoices")
        await app.start()
        await bus.publish("orders.created", b'{"id": 3, "item": "pen"}', key=b"o3")
        deadline = time.monotonic() + 5
        while not (await bus.describe_topic("invoices")).records:
            assert time.monotonic() < deadline, "nothing published"
            await asyncio.sleep(0.02)
        await app.stop()
        [out] = await read(bus, "invoices")
        assert out.key == b"o3"
        assert json.loads(out.value or b"") == {"order": 3, "total": 9.5}

    run_async(bus_url, body)


class Payment(pydantic.BaseModel):
    order: int
    amount: float = pydantic.Field(gt=0)


class Receipt(pydantic.BaseModel):
    order: int
    paid: float


@pytest.mark.needs(Capability.SHARE_GROUPS)
def test_pydantic_models_in_and_out_and_a_validation_error_dead_letters(bus_url: str) -> None:
    paid: list[Payment] = []

    async def body(bus: tidings.AsyncBus) -> None:
        app = App(bus)

        @app.subscriber("payments", queue="cashier", publishes="receipts")
        async def pay(payment: Payment) -> Receipt:
            paid.append(payment)
            return Receipt(order=payment.order, paid=payment.amount)

        await bus.create_topic("receipts")
        await app.start()
        await bus.publish("payments", Payment(order=1, amount=9.5).model_dump_json().encode())
        await bus.publish("payments", b'{"order": 2, "amount": -1}')  # fails validation
        await until_records(bus, "receipts")
        await until_records(bus, "payments.dlq")
        await app.stop()
        [receipt] = await read(bus, "receipts")
        assert Receipt.model_validate_json(receipt.value or b"") == Receipt(order=1, paid=9.5)
        [dead] = await read(bus, "payments.dlq")
        assert b"does not fit Payment" in (dead.header("tidings.dlq.reason") or b"")
        assert b"amount" in (dead.header("tidings.dlq.reason") or b"")

    run_async(bus_url, body)
    assert paid == [Payment(order=1, amount=9.5)]


async def until_records(bus: tidings.AsyncBus, topic: str, timeout_s: float = 5.0) -> None:
    """Wait until `topic` exists and holds a record."""
    deadline = time.monotonic() + timeout_s
    while True:
        with contextlib.suppress(tidings.TopicNotFoundError):
            if (await bus.describe_topic(topic)).records:
                return
        assert time.monotonic() < deadline, f"nothing in {topic}"
        await asyncio.sleep(0.02)


async def _stream(bus: tidings.AsyncBus, app: App, values: list[bytes]) -> None:
    await bus.create_topic("events")
    await app.start()
    for value in values:
        await bus.publish("events", value)


def test_on_error_skip_moves_on_and_commits(bus_url: str) -> None:
    handled: list[bytes] = []

    async def body(bus: tidings.AsyncBus) -> None:
        app = App(bus)

        @app.subscriber("events", group="g", from_beginning=True, on_error="skip")
        async def handle(raw: bytes) -> None:
            if raw == b"bad":
                raise ValueError("bad event")
            handled.append(raw)

        await _stream(bus, app, [b"bad", b"good"])
        await until(lambda: handled == [b"good"])
        await app.stop()
        assert await committed(bus, "g", "events") == 2

    run_async(bus_url, body)


def test_on_error_retry_then_dead_letter(bus_url: str) -> None:
    calls: list[bytes] = []

    async def body(bus: tidings.AsyncBus) -> None:
        app = App(bus)

        @app.subscriber(
            "events",
            group="g",
            from_beginning=True,
            max_retries=2,
            retry_backoff_ms=5,
            dead_letter_topic="events.dead",
        )
        async def handle(raw: bytes) -> None:
            calls.append(raw)
            if raw == b"flaky" and calls.count(raw) < 3:
                raise ValueError("not yet")
            if raw == b"poison":
                raise ValueError("never")

        await _stream(bus, app, [b"flaky", b"poison", b"fine"])
        await until(lambda: b"fine" in calls)
        await app.stop()
        [dead] = await read(bus, "events.dead")
        assert dead.value == b"poison"
        assert dead.header("tidings.dlq.reason") == b"ValueError: never"
        assert dead.header("tidings.dlq.topic") == b"events"
        assert await committed(bus, "g", "events") == 3

    run_async(bus_url, body)
    assert calls == [b"flaky"] * 3 + [b"poison"] * 3 + [b"fine"]


def test_on_error_dead_letter_defaults_to_the_topic_dlq(bus_url: str) -> None:
    async def body(bus: tidings.AsyncBus) -> None:
        app = App(bus)

        @app.subscriber("events", group="g", from_beginning=True, on_error="dead_letter")
        async def handle(order: Order) -> None: ...

        await _stream(bus, app, [b"[1, 2]"])
        deadline = time.monotonic() + 5
        while await committed(bus, "g", "events") != 1:
            assert time.monotonic() < deadline, "never committed"
            await asyncio.sleep(0.02)
        await app.stop()
        [dead] = await read(bus, "events.dlq")
        assert b"expected a JSON dict" in (dead.header("tidings.dlq.reason") or b"")

    run_async(bus_url, body)


def test_on_error_stop_stops_the_app_and_raises(bus_url: str) -> None:
    async def body(bus: tidings.AsyncBus) -> None:
        app = App(bus)

        @app.subscriber("events", group="g", from_beginning=True, on_error="stop")
        async def handle(raw: bytes) -> None:
            if raw == b"bad":
                raise ValueError("bad event")

        await _stream(bus, app, [b"ok", b"bad", b"after"])
        with pytest.raises(ValueError, match="bad event"):
            await asyncio.wait_for(app.wait(), 5)
        assert await committed(bus, "g", "events") == 1  # not past the failing record

    run_async(bus_url, body)


def test_run_raises_the_error_that_stopped_the_app(bus_url: str) -> None:
    with tidings.connect(bus_url) as bus:
        app = App(bus)

        @app.subscriber("events", group="g", from_beginning=True, on_error="stop")
        def handle(raw: bytes) -> None:
            raise ValueError(f"cannot handle {raw!r}")

        bus.create_topic("events")
        bus.publish("events", b"x")
        with pytest.raises(ValueError, match="cannot handle"):
            app.run()


def test_stop_finishes_the_handler_in_flight(bus_url: str) -> None:
    done: list[bytes] = []
    started = threading.Event()

    async def body(bus: tidings.AsyncBus) -> None:
        app = App(bus)

        @app.subscriber("events", group="g", from_beginning=True)
        def slow(raw: bytes) -> None:
            started.set()
            time.sleep(0.3)
            done.append(raw)

        await _stream(bus, app, [b"a", b"b"])
        await until(started.is_set)
        await app.stop()
        assert done == [b"a"]
        assert await committed(bus, "g", "events") == 1

    run_async(bus_url, body)


SERVICE = """
import os, signal, sys, time
import tidings

bus = tidings.connect(sys.argv[1])
app = tidings.App(bus)
done = []

@app.subscriber("events", group="g", from_beginning=True)
def handle(raw: bytes) -> None:
    os.kill(os.getpid(), signal.SIGTERM)  # arrives while this handler is in flight
    time.sleep(0.2)
    done.append(raw)

bus.create_topic("events")
bus.publish("events", b"x")
app.run()
print(done, bus.describe_group("g").partitions[0].committed)
bus.close()
"""


def test_run_stops_gracefully_on_sigterm(bus_url: str) -> None:
    result = subprocess.run(
        [sys.executable, "-c", SERVICE, bus_url],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["[b'x']", "1"]


def test_stop_during_a_retry_backoff_leaves_the_record_uncommitted(bus_url: str) -> None:
    calls: list[bytes] = []

    async def body(bus: tidings.AsyncBus) -> None:
        app = App(bus)

        @app.subscriber("events", group="g", from_beginning=True, retry_backoff_ms=10_000)
        async def handle(raw: bytes) -> None:
            calls.append(raw)
            raise ValueError("down")

        await _stream(bus, app, [b"a"])
        await until(lambda: calls == [b"a"])
        started = time.monotonic()
        await app.stop()
        assert time.monotonic() - started < 2  # the backoff does not hold the stop
        assert await committed(bus, "g", "events") is None
        assert "events.dlq" not in [t.name for t in await bus.list_topics()]

    run_async(bus_url, body)
