"""Request-reply: correlation id and reply-to in headers, timeouts, late replies."""

from __future__ import annotations

import asyncio
import json
import threading
import time
from dataclasses import dataclass

import pytest

import tidings
from tidings.app import CORRELATION_ID, REPLY_TO, App, RequestTimeoutError

from .helpers import run_async


@dataclass
class Quote:
    pair: str
    amount: float


def serve_rates(app: App, delay_s: float = 0.0) -> None:
    """A subscriber answering quotes on rates.quote."""

    @app.subscriber("rates.quote", group="rates", from_beginning=True)
    async def quote(q: Quote) -> dict[str, float]:
        await asyncio.sleep(delay_s)
        return {"rate": 1.1, "total": round(q.amount * 1.1, 2)}


async def reply_topics(bus: tidings.AsyncBus) -> list[str]:
    """The reply topics that exist now."""
    return [t.name for t in await bus.list_topics() if t.name.startswith("_replies.")]


def test_a_request_gets_its_reply(bus_url: str) -> None:
    async def body(bus: tidings.AsyncBus) -> None:
        await bus.create_topic("rates.quote")
        app = App(bus)
        serve_rates(app)
        await app.start()
        replies = await asyncio.gather(
            *(app.request("rates.quote", Quote("EURUSD", n), timeout=5) for n in (10, 20))
        )
        assert [json.loads(r.value or b"")["total"] for r in replies] == [11.0, 22.0]
        assert all(r.header(CORRELATION_ID) for r in replies)
        assert len(await reply_topics(bus)) == 1  # one reply topic per requester
        await app.stop()
        assert await reply_topics(bus) == []  # deleted on close

    run_async(bus_url, body)


def test_the_bus_requests_without_an_app(bus_url: str) -> None:
    async def body(bus: tidings.AsyncBus) -> None:
        await bus.create_topic("rates.quote")
        server = App(bus)
        serve_rates(server)
        await server.start()
        reply = await bus.request("rates.quote", {"pair": "EURUSD", "amount": 1}, timeout=5)
        assert json.loads(reply.value or b"") == {"rate": 1.1, "total": 1.1}
        again = await bus.request("rates.quote", Quote("EURUSD", 2), timeout=5)
        assert json.loads(again.value or b"")["total"] == 2.2
        assert len(await reply_topics(bus)) == 1  # the bus keeps one reply topic
        await server.stop()

    run_async(bus_url, body)


def test_a_sync_bus_requests_and_a_plain_consumer_answers(bus: tidings.Bus) -> None:
    """The headers are the whole protocol: any consumer can answer a request."""
    bus.create_topic("rates.quote")
    served = threading.Event()

    def answer() -> None:
        with bus.consumer("rates.quote", group="rates", from_beginning=True) as consumer:
            while not served.is_set():
                for record in consumer.poll(timeout_ms=100):
                    reply_to = (record.header(REPLY_TO) or b"").decode()
                    correlation = record.header(CORRELATION_ID)
                    bus.publish(
                        reply_to,
                        (record.value or b"") + b"!",
                        headers={CORRELATION_ID: correlation},
                    )
                    served.set()

    server = threading.Thread(target=answer)
    server.start()
    try:
        reply = bus.request("rates.quote", b"quote", timeout=5)
    finally:
        served.set()
        server.join()
    assert reply.value == b"quote!"
    with pytest.raises(RequestTimeoutError, match=r"rates\.quote"):
        bus.request("rates.quote", b"nobody answers now", timeout=0.2)
    assert bus.late_replies == 0


def test_no_reply_in_time_raises_a_clear_error(bus_url: str) -> None:
    async def body(bus: tidings.AsyncBus) -> None:
        await bus.create_topic("rates.quote")
        app = App(bus)
        started = time.monotonic()
        with pytest.raises(RequestTimeoutError, match=r"rates\.quote") as info:
            await app.request("rates.quote", b"?", timeout=0.2)
        assert 0.15 < time.monotonic() - started < 2
        assert isinstance(info.value, tidings.TidingsError)
        assert app._requester is not None and app._requester.pending == 0  # nothing leaks
        await app.stop()

    run_async(bus_url, body)


def test_a_late_reply_is_dropped_and_counted(bus_url: str) -> None:
    async def body(bus: tidings.AsyncBus) -> None:
        await bus.create_topic("rates.quote")
        app = App(bus)
        serve_rates(app, delay_s=0.3)
        await app.start()
        with pytest.raises(RequestTimeoutError):
            await app.request("rates.quote", Quote("EURUSD", 1), timeout=0.1)
        deadline = time.monotonic() + 5
        while app.late_replies != 1:
            assert time.monotonic() < deadline, "the late reply never arrived"
            await asyncio.sleep(0.02)
        reply = await app.request("rates.quote", Quote("EURUSD", 2), timeout=5)
        assert json.loads(reply.value or b"")["total"] == 2.2
        assert app.late_replies == 1
        await app.stop()

    run_async(bus_url, body)
