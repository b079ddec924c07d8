"""aiokafka, kafka-python and kcat against tidings serve: produce, group consume, commit."""

from __future__ import annotations

import asyncio
import subprocess
import time
from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from kafka import KafkaConsumer, KafkaProducer

from tidings import Record

from .conftest import Served


def read_python(broker: Served, topic: str, count: int) -> list[Record]:
    """`count` records of `topic` read through the Python API from the beginning."""
    with broker.bus() as bus:
        consumer = bus.consumer(topic, group="python-check", from_beginning=True)
        out: list[Record] = []
        deadline = time.monotonic() + 15
        while len(out) < count:
            assert time.monotonic() < deadline, f"got {len(out)} of {count}"
            out += consumer.poll(max_records=count, timeout_ms=500)
        consumer.close()
    return out


def test_aiokafka_produces_and_consumes_in_a_group_with_commits(broker: Served) -> None:
    async def body() -> None:
        producer = AIOKafkaProducer(bootstrap_servers=broker.bootstrap, acks="all")
        await producer.start()
        for i in range(50):
            await producer.send_and_wait(
                "aio", f"v{i}".encode(), key=b"k", headers=[("n", str(i).encode())]
            )
        await producer.stop()

        consumer = AIOKafkaConsumer(
            "aio",
            bootstrap_servers=broker.bootstrap,
            group_id="aio-group",
            auto_offset_reset="earliest",
            enable_auto_commit=False,
        )
        await consumer.start()
        got: list[Any] = []
        async with asyncio.timeout(20):
            while len(got) < 50:
                batch = await consumer.getmany(timeout_ms=500)
                for messages in batch.values():
                    got.extend(messages)
        await consumer.commit()
        await consumer.stop()
        assert [m.value for m in got] == [f"v{i}".encode() for i in range(50)]
        assert got[7].headers == (("n", b"7"),)

    asyncio.run(body())
    with broker.bus() as bus:
        [lag] = bus.describe_group("aio-group").partitions
        assert (lag.committed, lag.lag) == (50, 0)
    assert [r.value for r in read_python(broker, "aio", 50)][:2] == [b"v0", b"v1"]


def test_kafka_python_produces_and_consumes_in_a_group_with_commits(broker: Served) -> None:
    producer = KafkaProducer(bootstrap_servers=broker.bootstrap, acks="all")
    for i in range(30):
        producer.send("kp", key=b"key", value=f"m{i}".encode())
    producer.flush(15)
    producer.close()
    consumer = KafkaConsumer(
        "kp",
        bootstrap_servers=broker.bootstrap,
        group_id="kp-group",
        auto_offset_reset="earliest",
        enable_auto_commit=False,
        consumer_timeout_ms=15_000,
    )
    got = []
    for message in consumer:
        got.append(message)
        if len(got) == 30:
            break
    consumer.commit()
    consumer.close()
    assert [m.value for m in got] == [f"m{i}".encode() for i in range(30)]
    with broker.bus() as bus:
        [lag] = bus.describe_group("kp-group").partitions
        assert lag.committed == 30
    assert {r.key for r in read_python(broker, "kp", 30)} == {b"key"}


def kcat(broker: Served, *args: str, stdin: str | None = None) -> str:
    """Run kcat against the broker; its standard output."""
    done = subprocess.run(
        ["kcat", "-b", broker.bootstrap, *args],
        input=stdin,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    return done.stdout


def test_kcat_lists_metadata_produces_and_consumes(broker: Served) -> None:
    with broker.bus() as bus:
        bus.create_topic("kc", partitions=3)
    listing = kcat(broker, "-L")
    assert 'topic "kc" with 3 partitions' in listing
    assert "broker 0 at 127.0.0.1" in listing

    kcat(broker, "-P", "-t", "kc", "-p", "1", "-K", ":", stdin="a:one\nb:two\n")
    out = kcat(broker, "-C", "-t", "kc", "-p", "1", "-o", "beginning", "-e", "-f", "%k=%s@%o\n")
    assert out.splitlines() == ["a=one@0", "b=two@1"]
    records = sorted((r.key, r.value) for r in read_python(broker, "kc", 2))
    assert records == [(b"a", b"one"), (b"b", b"two")]

    # a balanced consumer group through kcat, committing as it goes
    grouped = kcat(broker, "-G", "kc-group", "-o", "beginning", "-e", "-f", "%s\n", "kc")
    assert sorted(grouped.split()) == ["one", "two"]
